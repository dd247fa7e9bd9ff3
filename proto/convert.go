package proto

import (
	"encoding/base64"
	"math"
	"strconv"
	"time"
)

// ValidData reports whether data is exactly one well-formed value in format
// f that also converts to the other format (see Convert). It is the check
// for HTTP publish bodies; sub and pub requests get it from DecodeRequest.
func ValidData(data []byte, f Format) error {
	var (
		i   int
		err error
	)
	switch f {
	case FormatJSON:
		i = jsonSkipWS(data, 0)
		if i >= len(data) {
			return dataErr(ErrMalformed, i, "no value")
		}
		if i, err = jsonValue(data, i, 0); err != nil {
			return err
		}
		i = jsonSkipWS(data, i)
	case FormatMsgpack:
		if len(data) == 0 {
			return dataErr(ErrMalformed, 0, "no value")
		}
		if i, err = mpValue(data, 0, 0); err != nil {
			return err
		}
	default:
		return ErrFormat
	}
	if i < len(data) {
		return dataErr(ErrMalformed, i, "data after the value")
	}
	return nil
}

// Convert translates one value between JSON and MessagePack, returning data
// itself when from and to are equal. The gateway calls it once per message
// and codec in use, never per subscriber.
//
// JSON to MessagePack: integers that fit int64 or uint64 stay integers in
// the smallest encoding, other numbers become float64; strings are
// unescaped (a lone \uD800-style surrogate becomes U+FFFD); whitespace is
// dropped. MessagePack to JSON: floats keep a fraction or exponent so they
// read back as floats ("1.0"), bin becomes a base64 (RFC 4648, padded)
// string, a timestamp becomes an RFC 3339 string in UTC. Maps with
// non-string keys (ErrNonStringKey), NaN and infinities, and other
// extension types (ErrUnrepresentable) are rejected, as is bad input
// (ErrMalformed) and nesting beyond MaxDepth (ErrTooDeep).
func Convert(data []byte, from, to Format) ([]byte, error) {
	if from == to && from.Valid() {
		return data, nil
	}
	// JSON text is mostly longer than its MessagePack form; MessagePack
	// grows in JSON by quotes, digits and base64.
	size := len(data)
	if to == FormatJSON {
		size += size/2 + 16
	}
	return AppendConvert(make([]byte, 0, size), data, from, to)
}

// AppendConvert is Convert appending to dst, for callers that reuse a
// buffer. Unlike Convert it copies data when from and to are equal. On
// error dst is returned with nothing appended.
func AppendConvert(dst, data []byte, from, to Format) ([]byte, error) {
	if !from.Valid() || !to.Valid() {
		return dst, ErrFormat
	}
	start := len(dst)
	var (
		i   int
		err error
	)
	if from == to {
		if err := ValidData(data, from); err != nil {
			return dst, err
		}
		return append(dst, data...), nil
	}
	if from == FormatJSON {
		i = jsonSkipWS(data, 0)
		if i >= len(data) {
			return dst, dataErr(ErrMalformed, i, "no value")
		}
		if dst, i, err = jsonToMsgpack(dst, data, i, 0); err != nil {
			return dst[:start], err
		}
		i = jsonSkipWS(data, i)
	} else {
		if len(data) == 0 {
			return dst, dataErr(ErrMalformed, 0, "no value")
		}
		if dst, i, err = msgpackToJSON(dst, data, 0, 0); err != nil {
			return dst[:start], err
		}
	}
	if i < len(data) {
		return dst[:start], dataErr(ErrMalformed, i, "data after the value")
	}
	return dst, nil
}

// jsonToMsgpack converts the JSON value at b[i], checking it on the way.
// Arrays and objects are written with a one-byte header; the rare one with
// more than 15 entries is moved up once its size is known.
func jsonToMsgpack(dst, b []byte, i, depth int) ([]byte, int, error) {
	if i >= len(b) {
		return dst, i, jsonUnexpected(b, i, "")
	}
	switch c := b[i]; {
	case c == '{' || c == '[':
		return jsonContainerToMsgpack(dst, b, i, depth+1)
	case c == '"':
		end, escaped, err := jsonString(b, i)
		if err != nil {
			return dst, end, err
		}
		return mpAppendJSONString(dst, b[i+1:end-1], escaped), end, nil
	case c == 't':
		end, err := jsonLiteral(b, i, "true")
		return append(dst, 0xc3), end, err
	case c == 'f':
		end, err := jsonLiteral(b, i, "false")
		return append(dst, 0xc2), end, err
	case c == 'n':
		end, err := jsonLiteral(b, i, "null")
		return append(dst, 0xc0), end, err
	case c == '-' || c >= '0' && c <= '9':
		end, isInt, err := jsonNumber(b, i)
		if err != nil {
			return dst, end, err
		}
		return mpAppendJSONNumber(dst, b[i:end], isInt), end, nil
	}
	return dst, i, jsonUnexpected(b, i, "a value")
}

func jsonContainerToMsgpack(dst, b []byte, i, depth int) ([]byte, int, error) {
	if depth > MaxDepth {
		return dst, i, dataErr(ErrTooDeep, i, "nesting deeper than "+strconv.Itoa(MaxDepth))
	}
	isObj := b[i] == '{'
	closer, base, want := byte(']'), byte(0x90), "',' or ']'"
	if isObj {
		closer, base, want = '}', 0x80, "',' or '}'"
	}
	head := len(dst)
	dst = append(dst, base)
	n := 0
	i = jsonSkipWS(b, i+1)
	if i < len(b) && b[i] == closer {
		return dst, i + 1, nil
	}
	var err error
	for {
		if isObj {
			if i >= len(b) || b[i] != '"' {
				return dst, i, jsonUnexpected(b, i, "a string key")
			}
			if dst, i, err = jsonToMsgpack(dst, b, i, depth); err != nil {
				return dst, i, err
			}
			i = jsonSkipWS(b, i)
			if i >= len(b) || b[i] != ':' {
				return dst, i, jsonUnexpected(b, i, "':'")
			}
			i = jsonSkipWS(b, i+1)
		}
		if dst, i, err = jsonToMsgpack(dst, b, i, depth); err != nil {
			return dst, i, err
		}
		n++
		i = jsonSkipWS(b, i)
		if i >= len(b) {
			return dst, i, jsonUnexpected(b, i, "")
		}
		if b[i] == ',' {
			i = jsonSkipWS(b, i+1)
			continue
		}
		if b[i] != closer {
			return dst, i, jsonUnexpected(b, i, want)
		}
		i++
		break
	}
	if n < 16 {
		dst[head] = base | byte(n)
		return dst, i, nil
	}
	hl := mpContainerHeaderLen(n)
	body := len(dst) - head - 1
	dst = append(dst, make([]byte, hl-1)...)
	copy(dst[head+hl:], dst[head+1:head+1+body])
	mpAppendContainer(dst[head:head], base, n)
	return dst, i, nil
}

// mpAppendJSONString writes a JSON string body as a MessagePack str. An
// escaped body only shrinks when decoded, so the header sized for the raw
// length is at least as long as needed and shrinks in place if too long.
func mpAppendJSONString(dst, raw []byte, escaped bool) []byte {
	if !escaped {
		return append(mpAppendStrHeader(dst, len(raw)), raw...)
	}
	head := len(dst)
	hl := mpStrHeaderLen(len(raw))
	dst = append(dst, make([]byte, hl)...)
	dst = appendUnescaped(dst, raw)
	n := len(dst) - head - hl
	if need := mpStrHeaderLen(n); need < hl {
		copy(dst[head+need:], dst[head+hl:])
		dst = dst[:len(dst)-(hl-need)]
		hl = need
	}
	mpAppendStrHeader(dst[head:head], n)
	return dst
}

// mpAppendJSONNumber writes a checked JSON number: an integer literal that
// fits int64 or uint64 stays an integer, anything else is a float64.
func mpAppendJSONNumber(dst, num []byte, isInt bool) []byte {
	if isInt {
		neg := num[0] == '-'
		digits := num
		if neg {
			digits = num[1:]
		}
		var v uint64
		fits := len(digits) <= 20
		for _, c := range digits {
			d := uint64(c - '0')
			if v > (math.MaxUint64-d)/10 {
				fits = false
				break
			}
			v = v*10 + d
		}
		switch {
		case fits && !neg:
			return mpAppendUint(dst, v)
		case fits && v <= 1<<63:
			return mpAppendInt(dst, int64(-v))
		}
	}
	// jsonNumber has already refused anything parseFloat cannot take.
	f, _ := parseFloat(num)
	return mpAppendFloat(dst, f)
}

// msgpackToJSON converts the MessagePack value at b[i], checking it on the
// way with the same rules as mpValue.
func msgpackToJSON(dst, b []byte, i, depth int) ([]byte, int, error) {
	t, next, err := mpNext(b, i)
	if err != nil {
		return dst, next, err
	}
	if err := mpCheckScalar(b, i, &t); err != nil {
		return dst, i, err
	}
	switch t.kind {
	case mpNil:
		dst = append(dst, "null"...)
	case mpBool:
		if t.u == 1 {
			dst = append(dst, "true"...)
		} else {
			dst = append(dst, "false"...)
		}
	case mpInt:
		if t.neg {
			dst = strconv.AppendInt(dst, int64(t.u), 10)
		} else {
			dst = strconv.AppendUint(dst, t.u, 10)
		}
	case mpFloat32:
		dst = appendJSONFloat(dst, float64(math.Float32frombits(uint32(t.u))), 32)
	case mpFloat64:
		dst = appendJSONFloat(dst, math.Float64frombits(t.u), 64)
	case mpStr:
		dst = appendJSONString(dst, bstr(b[t.start:t.end]))
	case mpBin:
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, b[t.start:t.end])
		dst = append(dst, '"')
	case mpExt: // only a valid timestamp gets past mpCheckScalar
		ts, _ := mpTime(b[t.start:t.end])
		dst = append(dst, '"')
		dst = ts.AppendFormat(dst, time.RFC3339Nano)
		dst = append(dst, '"')
	case mpArray, mpMap:
		if depth >= MaxDepth {
			return dst, i, dataErr(ErrTooDeep, i, "nesting deeper than "+strconv.Itoa(MaxDepth))
		}
		open, closer := byte('['), byte(']')
		if t.kind == mpMap {
			open, closer = '{', '}'
		}
		dst = append(dst, open)
		for k := 0; k < t.n; k++ {
			if k > 0 {
				dst = append(dst, ',')
			}
			if t.kind == mpMap {
				kt, _, err := mpNext(b, next)
				if err != nil {
					return dst, next, err
				}
				if kt.kind != mpStr {
					return dst, next, dataErr(ErrNonStringKey, next, "map key is "+article(kt.kind)+"; JSON keys are strings")
				}
				if dst, next, err = msgpackToJSON(dst, b, next, depth+1); err != nil {
					return dst, next, err
				}
				dst = append(dst, ':')
			}
			if dst, next, err = msgpackToJSON(dst, b, next, depth+1); err != nil {
				return dst, next, err
			}
		}
		dst = append(dst, closer)
	}
	return dst, next, nil
}
