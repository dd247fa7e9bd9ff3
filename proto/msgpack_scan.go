package proto

import (
	"encoding/binary"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// mpKind is the family of a MessagePack value.
type mpKind uint8

const (
	mpNil mpKind = iota
	mpBool
	mpInt
	mpFloat32
	mpFloat64
	mpStr
	mpBin
	mpArray
	mpMap
	mpExt
)

var mpKindNames = [...]string{
	mpNil: "nil", mpBool: "boolean", mpInt: "integer", mpFloat32: "float", mpFloat64: "float",
	mpStr: "string", mpBin: "binary", mpArray: "array", mpMap: "map", mpExt: "extension",
}

func (k mpKind) String() string { return mpKindNames[k] }

// mpToken is one decoded MessagePack header.
type mpToken struct {
	kind mpKind
	// n counts the elements of an array or the pairs of a map.
	n int
	// start and end delimit the payload of a str, bin or ext.
	start, end int
	// u holds a bool (0/1), an integer (int64 bits when neg), or float bits.
	u   uint64
	neg bool
	ext int8
}

// The timestamp extension type of the MessagePack spec.
const mpExtTimestamp = -1

func mpTruncated(i int) *DataError { return dataErr(ErrMalformed, i, "truncated value") }

// mpNext reads the header at b[i] and returns the offset past it; for str,
// bin and ext that is past the payload too, for arrays and maps it is the
// first element. Counts are checked against the bytes left, so a forged
// length cannot make a caller loop or allocate beyond the input.
func mpNext(b []byte, i int) (t mpToken, next int, err error) {
	if i >= len(b) {
		return t, i, mpTruncated(i)
	}
	c := b[i]
	i++
	var size int // bytes of a length or value field that follows c
	switch {
	case c <= 0x7f:
		t.kind, t.u = mpInt, uint64(c)
		return t, i, nil
	case c >= 0xe0:
		t.kind, t.u, t.neg = mpInt, uint64(int64(int8(c))), true
		return t, i, nil
	case c <= 0x8f:
		t.kind, t.n = mpMap, int(c&0x0f)
		return t, i, mpCount(b, i, t.n, 2)
	case c <= 0x9f:
		t.kind, t.n = mpArray, int(c&0x0f)
		return t, i, mpCount(b, i, t.n, 1)
	case c <= 0xbf:
		return mpPayload(b, i, mpStr, uint64(c&0x1f))
	}
	switch c {
	case 0xc0:
		t.kind = mpNil
		return t, i, nil
	case 0xc2, 0xc3:
		t.kind, t.u = mpBool, uint64(c&1)
		return t, i, nil
	case 0xc4, 0xd9:
		size = 1
	case 0xc5, 0xda, 0xcd, 0xd1, 0xdc, 0xde:
		size = 2
	case 0xc6, 0xdb, 0xca, 0xce, 0xd2, 0xdd, 0xdf:
		size = 4
	case 0xcb, 0xcf, 0xd3:
		size = 8
	case 0xcc, 0xd0, 0xc7:
		size = 1
	case 0xc8:
		size = 2
	case 0xc9:
		size = 4
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1, 2, 4, 8, 16
		if len(b)-i < 1 {
			return t, len(b), mpTruncated(len(b))
		}
		t, next, err = mpPayload(b, i+1, mpExt, 1<<(c-0xd4))
		t.ext = int8(b[i])
		return t, next, err
	default: // 0xc1 is never used
		return t, i - 1, dataErr(ErrMalformed, i-1, "reserved type byte 0xc1")
	}
	if len(b)-i < size {
		return t, len(b), mpTruncated(len(b))
	}
	var v uint64
	switch size {
	case 1:
		v = uint64(b[i])
	case 2:
		v = uint64(binary.BigEndian.Uint16(b[i:]))
	case 4:
		v = uint64(binary.BigEndian.Uint32(b[i:]))
	case 8:
		v = binary.BigEndian.Uint64(b[i:])
	}
	i += size
	switch c {
	case 0xcc, 0xcd, 0xce, 0xcf:
		t.kind, t.u = mpInt, v
	case 0xd0:
		t.kind, t.u = mpInt, uint64(int64(int8(v)))
	case 0xd1:
		t.kind, t.u = mpInt, uint64(int64(int16(v)))
	case 0xd2:
		t.kind, t.u = mpInt, uint64(int64(int32(v)))
	case 0xd3:
		t.kind, t.u = mpInt, v
	case 0xca:
		t.kind, t.u = mpFloat32, v
	case 0xcb:
		t.kind, t.u = mpFloat64, v
	case 0xd9, 0xda, 0xdb:
		return mpPayload(b, i, mpStr, v)
	case 0xc4, 0xc5, 0xc6:
		return mpPayload(b, i, mpBin, v)
	case 0xc7, 0xc8, 0xc9:
		if len(b)-i < 1 {
			return t, len(b), mpTruncated(len(b))
		}
		t, next, err = mpPayload(b, i+1, mpExt, v)
		t.ext = int8(b[i])
		return t, next, err
	case 0xdc, 0xdd:
		t.kind, t.n = mpArray, int(v)
		return t, i, mpCount(b, i, t.n, 1)
	case 0xde, 0xdf:
		t.kind, t.n = mpMap, int(v)
		return t, i, mpCount(b, i, t.n, 2)
	}
	if c >= 0xd0 && c <= 0xd3 {
		t.neg = int64(t.u) < 0
	}
	return t, i, nil
}

// mpCount rejects a container that claims more elements than bytes remain
// (each element takes at least one byte).
func mpCount(b []byte, i, n, per int) error {
	if n > (len(b)-i)/per {
		return mpTruncated(len(b))
	}
	return nil
}

func mpPayload(b []byte, i int, kind mpKind, n uint64) (mpToken, int, error) {
	if n > uint64(len(b)-i) {
		return mpToken{}, len(b), mpTruncated(len(b))
	}
	end := i + int(n)
	return mpToken{kind: kind, start: i, end: end}, end, nil
}

// int64 returns the integer as int64 when it fits.
func (t *mpToken) int64() (int64, bool) {
	if t.neg {
		return int64(t.u), true
	}
	return int64(t.u), t.u <= math.MaxInt64
}

// mpTime decodes a timestamp extension payload.
func mpTime(p []byte) (time.Time, bool) {
	var sec int64
	var nsec uint32
	switch len(p) {
	case 4:
		sec = int64(binary.BigEndian.Uint32(p))
	case 8:
		v := binary.BigEndian.Uint64(p)
		nsec, sec = uint32(v>>34), int64(v&(1<<34-1))
	case 12:
		nsec, sec = binary.BigEndian.Uint32(p), int64(binary.BigEndian.Uint64(p[4:]))
	default:
		return time.Time{}, false
	}
	if nsec >= 1e9 {
		return time.Time{}, false
	}
	t := time.Unix(sec, int64(nsec)).UTC()
	// RFC 3339 has four-digit years only.
	if y := t.Year(); y < 0 || y > 9999 {
		return time.Time{}, false
	}
	return t, true
}

// mpValue checks the value at b[i] and returns the offset past it. Beyond
// well-formedness it requires what JSON needs, so every accepted value
// converts: string map keys, UTF-8 strings, finite floats, and no
// extension but in-range timestamps.
func mpValue(b []byte, i, depth int) (int, error) {
	t, next, err := mpNext(b, i)
	if err != nil {
		return next, err
	}
	if err := mpCheckScalar(b, i, &t); err != nil {
		return i, err
	}
	switch t.kind {
	case mpArray:
		if depth >= MaxDepth {
			return i, dataErr(ErrTooDeep, i, "nesting deeper than "+strconv.Itoa(MaxDepth))
		}
		for k := 0; k < t.n; k++ {
			if next, err = mpValue(b, next, depth+1); err != nil {
				return next, err
			}
		}
	case mpMap:
		if depth >= MaxDepth {
			return i, dataErr(ErrTooDeep, i, "nesting deeper than "+strconv.Itoa(MaxDepth))
		}
		for k := 0; k < t.n; k++ {
			kt, kn, err := mpNext(b, next)
			if err != nil {
				return kn, err
			}
			if kt.kind != mpStr {
				return next, dataErr(ErrNonStringKey, next, "map key is "+article(kt.kind)+"; JSON keys are strings")
			}
			if err := mpCheckScalar(b, next, &kt); err != nil {
				return next, err
			}
			if next, err = mpValue(b, kn, depth+1); err != nil {
				return next, err
			}
		}
	}
	return next, nil
}

func article(k mpKind) string {
	switch k {
	case mpInt, mpArray, mpExt:
		return "an " + k.String()
	}
	return "a " + k.String()
}

// mpCheckScalar applies the JSON-compatibility rules to one scalar token
// found at offset off.
func mpCheckScalar(b []byte, off int, t *mpToken) error {
	switch t.kind {
	case mpStr:
		if !utf8.Valid(b[t.start:t.end]) {
			return dataErr(ErrMalformed, off, "string is not valid UTF-8")
		}
	case mpFloat32:
		if f := math.Float32frombits(uint32(t.u)); f != f || math.IsInf(float64(f), 0) {
			return dataErr(ErrUnrepresentable, off, "NaN or infinite float")
		}
	case mpFloat64:
		if f := math.Float64frombits(t.u); f != f || math.IsInf(f, 0) {
			return dataErr(ErrUnrepresentable, off, "NaN or infinite float")
		}
	case mpExt:
		if t.ext != mpExtTimestamp {
			return dataErr(ErrUnrepresentable, off, "extension type "+strconv.Itoa(int(t.ext))+" has no JSON form")
		}
		if _, ok := mpTime(b[t.start:t.end]); !ok {
			return dataErr(ErrUnrepresentable, off, "timestamp is malformed or outside years 0-9999")
		}
	}
	return nil
}

func mpAppendStrHeader(dst []byte, n int) []byte {
	switch {
	case n < 32:
		return append(dst, 0xa0|byte(n))
	case n <= math.MaxUint8:
		return append(dst, 0xd9, byte(n))
	case n <= math.MaxUint16:
		return append(dst, 0xda, byte(n>>8), byte(n))
	}
	return append(dst, 0xdb, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

func mpStrHeaderLen(n int) int {
	switch {
	case n < 32:
		return 1
	case n <= math.MaxUint8:
		return 2
	case n <= math.MaxUint16:
		return 3
	}
	return 5
}

// mpAppendString writes s as a str. Invalid UTF-8 becomes U+FFFD, as in
// the JSON codec, since MessagePack strings are UTF-8 and clients' decoders
// may throw on anything else.
func mpAppendString(dst []byte, s string) []byte {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	return append(mpAppendStrHeader(dst, len(s)), s...)
}

// mpAppendContainer writes an array (base 0x90) or map (base 0x80) header.
func mpAppendContainer(dst []byte, base byte, n int) []byte {
	if n < 16 {
		return append(dst, base|byte(n))
	}
	// array16 0xdc, array32 0xdd; map16 0xde, map32 0xdf.
	code := byte(0xdc)
	if base == 0x80 {
		code = 0xde
	}
	if n <= math.MaxUint16 {
		return append(dst, code, byte(n>>8), byte(n))
	}
	return append(dst, code+1, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

func mpContainerHeaderLen(n int) int {
	switch {
	case n < 16:
		return 1
	case n <= math.MaxUint16:
		return 3
	}
	return 5
}

func mpAppendUint(dst []byte, v uint64) []byte {
	switch {
	case v <= 0x7f:
		return append(dst, byte(v))
	case v <= math.MaxUint8:
		return append(dst, 0xcc, byte(v))
	case v <= math.MaxUint16:
		return append(dst, 0xcd, byte(v>>8), byte(v))
	case v <= math.MaxUint32:
		return append(dst, 0xce, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
	return binary.BigEndian.AppendUint64(append(dst, 0xcf), v)
}

func mpAppendInt(dst []byte, v int64) []byte {
	switch {
	case v >= 0:
		return mpAppendUint(dst, uint64(v))
	case v >= -32:
		return append(dst, byte(v))
	case v >= math.MinInt8:
		return append(dst, 0xd0, byte(v))
	case v >= math.MinInt16:
		return append(dst, 0xd1, byte(v>>8), byte(v))
	case v >= math.MinInt32:
		return append(dst, 0xd2, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
	return binary.BigEndian.AppendUint64(append(dst, 0xd3), uint64(v))
}

func mpAppendFloat(dst []byte, f float64) []byte {
	return binary.BigEndian.AppendUint64(append(dst, 0xcb), math.Float64bits(f))
}
