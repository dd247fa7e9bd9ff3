package proto

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// The helpers below are independent oracles: encoding/json and
// vmihailenco/msgpack say what a value is, so the tests do not check this
// package's codecs against themselves.

// jnode is a JSON value with object members kept in order, duplicates
// included, so an envelope can be re-encoded exactly as written.
type jnode struct {
	kind  byte // 'o' object, 'a' array, 's' string, 'n' number, 'b' bool, 'z' null
	keys  []string
	elems []*jnode
	str   string
	num   json.Number
	b     bool
}

func parseJSONTree(t testing.TB, text string) *jnode {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(text))
	dec.UseNumber()
	n, err := readJNode(dec)
	if err != nil {
		t.Fatalf("oracle cannot parse %q: %v", text, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		t.Fatalf("oracle: trailing data in %q", text)
	}
	return n
}

func readJNode(dec *json.Decoder) (*jnode, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch v := tok.(type) {
	case json.Delim:
		n := &jnode{kind: 'a'}
		if v == '{' {
			n.kind = 'o'
		}
		for dec.More() {
			if n.kind == 'o' {
				k, err := dec.Token()
				if err != nil {
					return nil, err
				}
				n.keys = append(n.keys, k.(string))
			}
			e, err := readJNode(dec)
			if err != nil {
				return nil, err
			}
			n.elems = append(n.elems, e)
		}
		_, err := dec.Token() // closing delimiter
		return n, err
	case string:
		return &jnode{kind: 's', str: v}, nil
	case json.Number:
		return &jnode{kind: 'n', num: v}, nil
	case bool:
		return &jnode{kind: 'b', b: v}, nil
	case nil:
		return &jnode{kind: 'z'}, nil
	}
	return nil, fmt.Errorf("unexpected token %v", tok)
}

func (n *jnode) encode(enc *msgpack.Encoder) error {
	switch n.kind {
	case 'o':
		if err := enc.EncodeMapLen(len(n.elems)); err != nil {
			return err
		}
		for i, e := range n.elems {
			if err := enc.EncodeString(n.keys[i]); err != nil {
				return err
			}
			if err := e.encode(enc); err != nil {
				return err
			}
		}
		return nil
	case 'a':
		if err := enc.EncodeArrayLen(len(n.elems)); err != nil {
			return err
		}
		for _, e := range n.elems {
			if err := e.encode(enc); err != nil {
				return err
			}
		}
		return nil
	case 's':
		return enc.EncodeString(n.str)
	case 'b':
		return enc.EncodeBool(n.b)
	case 'z':
		return enc.EncodeNil()
	}
	s := n.num.String()
	if !strings.ContainsAny(s, ".eE") {
		if v, err := n.num.Int64(); err == nil {
			return enc.EncodeInt(v)
		}
		var u uint64
		if _, err := fmt.Sscan(s, &u); err == nil {
			return enc.EncodeUint(u)
		}
	}
	f, err := n.num.Float64()
	if err != nil {
		return err
	}
	return enc.EncodeFloat64(f)
}

// mp encodes a JSON text as MessagePack with the oracle encoder.
func mp(t testing.TB, text string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := parseJSONTree(t, text).encode(msgpack.NewEncoder(&buf)); err != nil {
		t.Fatalf("oracle cannot encode %q: %v", text, err)
	}
	return buf.Bytes()
}

// mpOf encodes any Go value with the oracle encoder.
func mpOf(t testing.TB, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// inFormat returns a JSON text as data in format f.
func inFormat(t testing.TB, f Format, text string) []byte {
	t.Helper()
	if f == FormatMsgpack {
		return mp(t, text)
	}
	return []byte(text)
}

// canon decodes one value with the oracle decoders into a comparable form:
// numbers become int64/uint64 when integral literals or integer types, and
// float64 otherwise; bin becomes base64 and timestamps RFC 3339 strings,
// as Convert writes them.
func canon(t testing.TB, data []byte, f Format) any {
	t.Helper()
	if f == FormatJSON {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("oracle cannot decode JSON %q: %v", data, err)
		}
		return canonValue(v)
	}
	v, err := msgpack.NewDecoder(bytes.NewReader(data)).DecodeInterface()
	if err != nil {
		t.Fatalf("oracle cannot decode MessagePack %x: %v", data, err)
	}
	return canonValue(v)
}

func canonValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[k] = canonValue(e)
		}
		return m
	case []any:
		a := make([]any, len(v))
		for i, e := range v {
			a[i] = canonValue(e)
		}
		return a
	case json.Number:
		s := v.String()
		if !strings.ContainsAny(s, ".eE") {
			if i, err := v.Int64(); err == nil {
				return i
			}
			var u uint64
			if _, err := fmt.Sscan(s, &u); err == nil {
				return u
			}
		}
		f, _ := v.Float64()
		return f
	case int8, int16, int32, int64, int:
		return reflect.ValueOf(v).Int()
	case uint8, uint16, uint32, uint64, uint:
		if u := reflect.ValueOf(v).Uint(); u > math.MaxInt64 {
			return u
		}
		return int64(reflect.ValueOf(v).Uint())
	case float32:
		return float64(v)
	case []byte:
		return base64.StdEncoding.EncodeToString(v)
	case time.Time:
		return v.UTC().Format(time.RFC3339Nano)
	}
	return v
}

func sameValue(t testing.TB, a []byte, af Format, b []byte, bf Format) {
	t.Helper()
	if ca, cb := canon(t, a, af), canon(t, b, bf); !reflect.DeepEqual(ca, cb) {
		t.Fatalf("values differ:\n %s %q -> %#v\n %s %q -> %#v", af, a, ca, bf, b, cb)
	}
}

// wantProtoError checks that err is an *Error with the code, id and a
// message containing each of the fragments.
func wantProtoError(t testing.TB, err error, code Code, id uint64, hasID bool, fragments ...string) {
	t.Helper()
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatalf("err = %v (%T), want *Error %s", err, err, code)
	}
	if pe.Code != code {
		t.Fatalf("code = %s (%q), want %s", pe.Code, pe.Msg, code)
	}
	if pe.HasID != hasID || pe.ID != id {
		t.Fatalf("id = %d/%v, want %d/%v (%q)", pe.ID, pe.HasID, id, hasID, pe.Msg)
	}
	for _, f := range fragments {
		if !strings.Contains(pe.Msg, f) {
			t.Fatalf("msg %q does not mention %q", pe.Msg, f)
		}
	}
}
