package proto

import (
	"math"
	"strconv"
)

// Identity and presence fields: a pub's echo, and what the acks of info,
// presence and presence_stats and the join and leave events carry. They
// are read through the same envReader as every other field, so both
// codecs give the same messages.

// readNoEcho reads a pub's optional "echo"; absent and null mean true, the
// v1 behaviour, so NoEcho is set only by an explicit false.
func readNoEcho(r envReader, s span) (bool, *Error) {
	if absent(r, s) {
		return false, nil
	}
	echo, ok := r.boolean(s)
	if !ok {
		return false, badRequest(`field "echo" must be a boolean, got ` + r.kind(s))
	}
	return !echo, nil
}

// readPresenceAckFields reads the fields an ack of info, presence or
// presence_stats may carry. Each is optional: which ones to expect is up to
// the client, which knows what it asked.
func readPresenceAckFields(r envReader, f *fields, rep *Reply) *Error {
	var e *Error
	if rep.Client, e = readOptionalString(r, f, fClient); e != nil {
		return e
	}
	if rep.User, e = readOptionalString(r, f, fUser); e != nil {
		return e
	}
	if rep.Node, e = readOptionalString(r, f, fNode); e != nil {
		return e
	}
	if rep.Presence, e = readMembers(r, f[fPresence]); e != nil {
		return e
	}
	if rep.Clients, e = readCount(r, f, fClients); e != nil {
		return e
	}
	rep.Users, e = readCount(r, f, fUsers)
	return e
}

// readCount reads an optional count into an int, refusing what does not fit.
func readCount(r envReader, f *fields, k field) (int, *Error) {
	s := f[k]
	if absent(r, s) {
		return 0, nil
	}
	name := "field " + strconv.Quote(fieldNames[k])
	v, e := readUint(r, s, name)
	if e != nil {
		return 0, e
	}
	if v > math.MaxInt {
		return 0, badRequest(name + " is larger than " + strconv.Itoa(math.MaxInt))
	}
	return int(v), nil
}

// readMembers reads the "presence" array of an ack, in wire order. Absent
// and null give nil; [] gives an empty slice, so a client can tell "no one
// is here" from a plain ack.
func readMembers(r envReader, s span) ([]Member, *Error) {
	if absent(r, s) {
		return nil, nil
	}
	n, ok := r.elems(s, func(int, span) bool { return true })
	if !ok {
		return nil, badRequest(`field "presence" must be an array of objects, got ` + r.kind(s))
	}
	out := make([]Member, 0, n)
	var bad *Error
	r.elems(s, func(i int, e span) bool {
		var m Member
		if m, bad = readMember(r, e, i); bad != nil {
			return false
		}
		out = append(out, m)
		return true
	})
	if bad != nil {
		return nil, bad
	}
	return out, nil
}

// presencePath names element i of "presence" for messages; it is built
// only on failure, so a good ack costs no string per member.
func presencePath(i int) string { return "presence[" + strconv.Itoa(i) + "]" }

// Keys of a presence member object.
const (
	memberClient = iota
	memberUser
	nMemberKeys
)

var memberKeyNames = [nMemberKeys]string{"client", "user"}

// readMember reads element i of "presence": "client" required, "user"
// optional (absent or null is ""), other keys skipped. Messages name the
// value by its path (presence[2].client).
func readMember(r envReader, v span, i int) (Member, *Error) {
	var m [nMemberKeys]span
	ok, bad := objectKeys(r, v, memberKeyNames[:], m[:], func() string { return presencePath(i) })
	switch {
	case !ok:
		return Member{}, badRequest(presencePath(i) + ` must be an object with "client" and "user", got ` + r.kind(v))
	case bad != nil:
		return Member{}, bad
	case absent(r, m[memberClient]):
		return Member{}, badRequest("missing field " + presencePath(i) + ".client")
	}
	var out Member
	for j, s := range m {
		if absent(r, s) {
			continue
		}
		b, isStr := r.text(s, nil)
		if !isStr {
			return Member{}, badRequest(presencePath(i) + "." + memberKeyNames[j] + " must be a string, got " + r.kind(s))
		}
		if j == memberClient {
			out.Client = string(b)
		} else {
			out.User = string(b)
		}
	}
	return out, nil
}
