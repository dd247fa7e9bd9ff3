package proto

import "slices"

// History fields: the positions a sub recovers from (since), the latest
// publications it asks for (last), and the offsets and epochs the server
// sends back. They are read through the same envReader as every other
// field, so both codecs give the same messages.

// memberPath names one topic's entry of an object field for messages:
// since["chat.1"].
func memberPath(field string, key []byte) string {
	return field + "[" + quoteShort(key) + "]"
}

// Keys of a position object.
const (
	posOffset = iota
	posEpoch
	posRecovered
	nPosKeys
)

var posKeyNames = [nPosKeys]string{"offset", "epoch", "recovered"}

// readPosition reads the position object v of topic key in field:
// "offset" and "epoch" required, "recovered" read only in a reply, other
// keys skipped. Messages name the value by its path (since["a"].offset).
func readPosition(r envReader, v span, field string, key []byte, reply bool) (TopicPosition, *Error) {
	var p TopicPosition
	var m [nPosKeys]span
	names := posKeyNames[:]
	if !reply {
		names = names[:posRecovered] // a request's "recovered" is skipped
	}
	ok, bad := objectKeys(r, v, names, m[:], func() string { return memberPath(field, key) })
	switch {
	case !ok:
		return p, badRequest(memberPath(field, key) + ` must be an object with "offset" and "epoch", got ` + r.kind(v))
	case bad != nil:
		return p, bad
	case absent(r, m[posOffset]):
		return p, badRequest("missing field " + memberPath(field, key) + ".offset")
	case absent(r, m[posEpoch]):
		return p, badRequest("missing field " + memberPath(field, key) + ".epoch")
	}
	var problem string
	if p.Offset, problem = r.uint(m[posOffset]); problem != "" {
		return p, badRequest(memberPath(field, key) + ".offset " + problem)
	}
	epoch, isStr := r.text(m[posEpoch], nil)
	if !isStr {
		return p, badRequest(memberPath(field, key) + ".epoch must be a string, got " + r.kind(m[posEpoch]))
	}
	p.Epoch = string(epoch)
	if s := m[posRecovered]; !absent(r, s) {
		if p.Recovered, ok = r.boolean(s); !ok {
			return p, badRequest(memberPath(field, key) + ".recovered must be a boolean, got " + r.kind(s))
		}
		p.Asked = true
	}
	return p, nil
}

// objectKeys records in m[i] the value of key names[i] of object v; other
// keys are skipped and a repeated one is refused, naming it under the path
// path returns (called only then). ok is false when v is not an object.
func objectKeys(r envReader, v span, names []string, m []span, path func() string) (ok bool, bad *Error) {
	_, ok = r.members(v, func(k, mv span) bool {
		var buf [16]byte
		name, _ := r.text(k, buf[:0])
		i := slices.Index(names, bstr(name))
		switch {
		case i < 0:
			return true
		case m[i].present():
			bad = badRequest("duplicate field " + path() + "." + names[i])
			return false
		}
		m[i] = mv
		return true
	})
	return ok, bad
}

// readSince reads a sub's since: each key a valid topic that is also one of
// topics, each value a position. Absent, null and {} all give nil.
func readSince(r envReader, s span, topics []string) (map[string]Position, *Error) {
	if absent(r, s) {
		return nil, nil
	}
	n, ok := r.members(s, func(span, span) bool { return true })
	switch {
	case !ok:
		return nil, badRequest(`field "since" must be an object, got ` + r.kind(s))
	case n == 0:
		return nil, nil
	}
	// A valid since has at most one key per topic; sizing by the key count
	// alone would let a message of tiny bogus entries allocate a big map.
	since := make(map[string]Position, min(n, len(topics)))
	set := topicSet{topics: topics}
	var bad *Error
	r.members(s, func(k, v span) bool {
		var buf [MaxTopicLen]byte
		key, _ := r.text(k, buf[:0])
		if bad = checkTopic(bstr(key)); bad != nil {
			return false
		}
		topic, in := set.find(key)
		if !in {
			bad = badRequest("since names topic " + quoteShort(key) + " which is not in topics")
			return false
		}
		if _, dup := since[topic]; dup {
			bad = badRequest("duplicate topic " + quoteShort(key) + ` in field "since"`)
			return false
		}
		p, e := readPosition(r, v, "since", key, false)
		if e != nil {
			bad = e
			return false
		}
		since[topic] = Position{Offset: p.Offset, Epoch: p.Epoch}
		return true
	})
	if bad != nil {
		return nil, bad
	}
	return since, nil
}

// topicSet finds a since key among a sub's topics, so the map shares the
// topic's string. A short list is scanned; a long one is indexed once, so
// that a large sub does not cost topics × keys comparisons.
type topicSet struct {
	topics []string
	index  map[string]string
}

const topicScanMax = 16

func (ts *topicSet) find(key []byte) (string, bool) {
	if len(ts.topics) <= topicScanMax {
		for _, t := range ts.topics {
			if t == bstr(key) {
				return t, true
			}
		}
		return "", false
	}
	if ts.index == nil {
		ts.index = make(map[string]string, len(ts.topics))
		for _, t := range ts.topics {
			ts.index[t] = t
		}
	}
	t, ok := ts.index[string(key)]
	return t, ok
}

// readPositions reads the positions of a sub's ack, in wire order. Absent,
// null and {} all give nil; a topic may appear once.
func readPositions(r envReader, s span) ([]TopicPosition, *Error) {
	if absent(r, s) {
		return nil, nil
	}
	n, ok := r.members(s, func(span, span) bool { return true })
	switch {
	case !ok:
		return nil, badRequest(`field "positions" must be an object, got ` + r.kind(s))
	case n == 0:
		return nil, nil
	}
	out := make([]TopicPosition, 0, n)
	var seen map[string]struct{}
	if n > topicScanMax {
		seen = make(map[string]struct{}, n)
	}
	var bad *Error
	r.members(s, func(k, v span) bool {
		var buf [MaxTopicLen]byte
		key, _ := r.text(k, buf[:0])
		dup := false
		if seen != nil {
			_, dup = seen[string(key)]
		} else {
			for i := 0; i < len(out) && !dup; i++ {
				dup = out[i].Topic == bstr(key)
			}
		}
		if dup {
			bad = badRequest("duplicate topic " + quoteShort(key) + ` in field "positions"`)
			return false
		}
		p, e := readPosition(r, v, "positions", key, true)
		if e != nil {
			bad = e
			return false
		}
		p.Topic = string(key)
		out = append(out, p)
		if seen != nil {
			seen[p.Topic] = struct{}{}
		}
		return true
	})
	if bad != nil {
		return nil, bad
	}
	return out, nil
}

// readStreamFields reads the offset and epoch of a msg or an ack.
func readStreamFields(r envReader, f *fields, rep *Reply) *Error {
	var e *Error
	if s := f[fOffset]; !absent(r, s) {
		if rep.Offset, e = readUint(r, s, `field "offset"`); e != nil {
			return e
		}
	}
	if rep.Epoch, e = readOptionalString(r, f, fEpoch); e != nil {
		return e
	}
	return nil
}

// sinceTopics returns the topics of since sorted, so that a request
// encodes the same way every time; buf holds a few without allocating.
func sinceTopics(since map[string]Position, buf []string) []string {
	topics := buf[:0]
	for t := range since {
		topics = append(topics, t)
	}
	slices.Sort(topics)
	return topics
}
