package proto

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
)

func other(f Format) Format {
	if f == FormatJSON {
		return FormatMsgpack
	}
	return FormatJSON
}

func repeatJSON(elem string, n int) string {
	return "[" + strings.TrimSuffix(strings.Repeat(elem+",", n), ",") + "]"
}

func objectJSON(n int) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"k` + strconv.Itoa(i) + `":` + strconv.Itoa(i))
	}
	b.WriteByte('}')
	return b.String()
}

// JSON values whose MessagePack form the oracle encoder must reproduce
// byte for byte: same value, smallest encodings.
var jsonValues = []string{
	`null`, `true`, `false`,
	`0`, `-0`, `127`, `128`, `255`, `256`, `65535`, `65536`, `4294967295`, `4294967296`,
	`-1`, `-32`, `-33`, `-128`, `-129`, `-32768`, `-32769`, `-2147483648`, `-2147483649`,
	`9223372036854775807`, `9223372036854775808`, `18446744073709551615`, `18446744073709551616`,
	`-9223372036854775808`, `-9223372036854775809`, `123456789012345678901234567890`,
	`1.5`, `-2.25e-10`, `1E+2`, `1.0`, `0.1`, `1e308`, `5e-324`, `1e-400`,
	`""`, `"abc"`, `"\u00e9\n\"\\\/\b\f\r\t"`, `"\ud83d\ude00"`, `"\ud800"`, `"\udc00x"`, `"\ud800\u0041"`, `"é😀"`,
	`"` + strings.Repeat("s", 31) + `"`, `"` + strings.Repeat("s", 32) + `"`, `"` + strings.Repeat("s", 255) + `"`,
	`"` + strings.Repeat("s", 256) + `"`, `"` + strings.Repeat("s", 65535) + `"`, `"` + strings.Repeat("s", 65536) + `"`,
	// Escapes that shrink a string across a header size boundary.
	`"` + strings.Repeat(`\u0041`, 31) + `"`, `"` + strings.Repeat(`\u0041`, 32) + `"`,
	`"` + strings.Repeat(`\n`, 255) + `"`, `"` + strings.Repeat(`\u00e9`, 20000) + `"`,
	`[]`, `{}`, `[[]]`, `[1,[2,[3,{"a":[]}]]]`, `{"a":{"b":{"c":null}}}`,
	repeatJSON("1", 15), repeatJSON("1", 16), repeatJSON("[1,2]", 300), repeatJSON("1", 65535), repeatJSON("0", 65536),
	repeatJSON(repeatJSON("7", 20), 20), objectJSON(15), objectJSON(16), objectJSON(70000),
	`{"` + strings.Repeat("k", 40) + `":` + repeatJSON(`"v"`, 17) + `}`,
	" \t\n[ 1 , { \"a\" : true } , \"x\" ]\r\n ",
}

func TestConvertJSONToMsgpackMatchesOracle(t *testing.T) {
	for _, in := range jsonValues {
		got, err := Convert([]byte(in), FormatJSON, FormatMsgpack)
		if err != nil {
			t.Fatalf("Convert(%.60q): %v", in, err)
		}
		if want := mp(t, in); !bytes.Equal(got, want) {
			t.Fatalf("Convert(%.60q)\n got %.80x\nwant %.80x", in, got, want)
		}
		if err := ValidData([]byte(in), FormatJSON); err != nil {
			t.Fatalf("ValidData(%.60q): %v", in, err)
		}
		if err := ValidData(got, FormatMsgpack); err != nil {
			t.Fatalf("ValidData(msgpack of %.60q): %v", in, err)
		}
	}
}

// Converting JSON to MessagePack and back keeps the value, and a second
// trip changes nothing.
func TestConvertRoundTripFromJSON(t *testing.T) {
	for _, in := range jsonValues {
		m, err := Convert([]byte(in), FormatJSON, FormatMsgpack)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Convert(m, FormatMsgpack, FormatJSON)
		if err != nil {
			t.Fatalf("back from %.60q: %v", in, err)
		}
		sameValue(t, []byte(in), FormatJSON, back, FormatJSON)
		m2, err := Convert(back, FormatJSON, FormatMsgpack)
		if err != nil || !bytes.Equal(m, m2) {
			t.Fatalf("second trip of %.60q: %v\n %.80x\n %.80x", in, err, m, m2)
		}
	}
}

func TestConvertMsgpackToJSON(t *testing.T) {
	ts := time.Date(2024, 2, 29, 13, 4, 5, 123456789, time.UTC)
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"nil", []byte{0xc0}, `null`},
		{"bools", []byte{0x92, 0xc3, 0xc2}, `[true,false]`},
		{"fixints", []byte{0x93, 0x00, 0x7f, 0xff}, `[0,127,-1]`},
		{"uint64 max", mpAppendUint(nil, math.MaxUint64), `18446744073709551615`},
		{"int64 min", mpAppendInt(nil, math.MinInt64), `-9223372036854775808`},
		{"int64 positive", []byte{0xd3, 0, 0, 0, 0, 0, 0, 1, 0}, `256`},
		{"int8 positive", []byte{0xd0, 5}, `5`},
		{"uint16", []byte{0xcd, 1, 0}, `256`},
		{"float one keeps a fraction", mpOf(t, 1.0), `1.0`},
		{"float", mpOf(t, -1.5), `-1.5`},
		{"float zero", mpOf(t, 0.0), `0.0`},
		{"float negative zero", mpOf(t, math.Copysign(0, -1)), `-0.0`},
		{"float large", mpOf(t, 1e21), `1e+21`},
		{"float large integral", mpOf(t, 1e20), `100000000000000000000.0`},
		{"float small", mpOf(t, 1e-7), `1e-7`},
		{"float max", mpOf(t, math.MaxFloat64), `1.7976931348623157e+308`},
		{"float32", mpOf(t, float32(1.1)), `1.1`},
		{"float32 integral", mpOf(t, float32(16777216)), `16777216.0`},
		{"string", mpOf(t, "a\"b\\c\n\x01é"), `"a\"b\\c\n\u0001é"`},
		{"str8", mpOf(t, strings.Repeat("s", 200)), `"` + strings.Repeat("s", 200) + `"`},
		{"bin", mpOf(t, []byte{0, 1, 2, 0xff}), `"AAEC/w=="`},
		{"empty bin", []byte{0xc4, 0}, `""`},
		{"timestamp 32", []byte{0xd6, 0xff, 0, 0, 0, 0}, `"1970-01-01T00:00:00Z"`},
		{"timestamp 96", mpOf(t, ts), `"2024-02-29T13:04:05.123456789Z"`},
		{"timestamp 64", []byte{0xd7, 0xff, 0, 0, 0, 4, 0, 0, 0, 1}, `"1970-01-01T00:00:01.000000001Z"`},
		{"map", mpOf(t, map[string]any{"a": []any{1, "b", nil}}), `{"a":[1,"b",null]}`},
		{"empty containers", []byte{0x92, 0x80, 0x90}, `[{},[]]`},
		{"array16", append([]byte{0xdc, 0, 2}, 1, 2), `[1,2]`},
		{"map32", append([]byte{0xdf, 0, 0, 0, 1, 0xa1, 'k'}, 0xc0), `{"k":null}`},
		{"duplicate keys pass through", []byte{0x82, 0xa1, 'k', 1, 0xa1, 'k', 2}, `{"k":1,"k":2}`},
	}
	for _, tt := range tests {
		got, err := Convert(tt.in, FormatMsgpack, FormatJSON)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if string(got) != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, got, tt.want)
		}
		if !json.Valid(got) {
			t.Errorf("%s: output %s is not JSON", tt.name, got)
		}
	}
}

// Values a Go backend would publish with vmihailenco/msgpack survive the
// trip to JSON and back.
func TestConvertRoundTripFromMsgpack(t *testing.T) {
	values := []any{
		map[string]any{"price": 101.25, "qty": 7, "sym": "AAPL", "tags": []string{"a", "b"}, "ok": true, "none": nil},
		[]any{int64(math.MinInt64), uint64(math.MaxUint64), -1, 0, 1e-300, float32(0.5)},
		map[string]any{"nested": map[string]any{"deeper": []any{map[string]any{}}}},
		[]byte("raw"), time.Unix(1700000000, 42).UTC(), strings.Repeat("é", 1000),
	}
	for _, v := range values {
		in := mpOf(t, v)
		j, err := Convert(in, FormatMsgpack, FormatJSON)
		if err != nil {
			t.Fatalf("%v: %v", v, err)
		}
		sameValue(t, in, FormatMsgpack, j, FormatJSON)
		m, err := Convert(j, FormatJSON, FormatMsgpack)
		if err != nil {
			t.Fatal(err)
		}
		j2, err := Convert(m, FormatMsgpack, FormatJSON)
		if err != nil || !bytes.Equal(j, j2) {
			t.Fatalf("second trip of %v: %v\n %s\n %s", v, err, j, j2)
		}
	}
}

func TestConvertErrors(t *testing.T) {
	deepJSON := strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1)
	deepMP := append(bytes.Repeat([]byte{0x91}, MaxDepth+1), 0xc0)
	tests := []struct {
		name   string
		in     []byte
		from   Format
		want   error
		frag   string
		offset int
	}{
		{"json empty", nil, FormatJSON, ErrMalformed, "no value", 0},
		{"json blank", []byte("  "), FormatJSON, ErrMalformed, "no value", 2},
		{"json trailing", []byte(`1 2`), FormatJSON, ErrMalformed, "data after the value", 2},
		{"json truncated", []byte(`{"a":`), FormatJSON, ErrMalformed, "end of input", 5},
		{"json bad token", []byte(`[1,x]`), FormatJSON, ErrMalformed, "'x'", 3},
		{"json trailing comma", []byte(`[1,]`), FormatJSON, ErrMalformed, "']'", 3},
		{"json key not string", []byte(`{1:2}`), FormatJSON, ErrMalformed, "string key", 1},
		{"json invalid UTF-8", []byte("\"\xc3\""), FormatJSON, ErrMalformed, "UTF-8", 1},
		{"json overflow", []byte(`[1e400]`), FormatJSON, ErrUnrepresentable, "float64 range", 1},
		{"json long overflow", []byte(strings.Repeat("9", 400)), FormatJSON, ErrUnrepresentable, "float64 range", 0},
		{"json NaN", []byte(`NaN`), FormatJSON, ErrMalformed, "'N'", 0},
		{"json too deep", []byte(deepJSON), FormatJSON, ErrTooDeep, "1000", MaxDepth},
		{"msgpack empty", nil, FormatMsgpack, ErrMalformed, "no value", 0},
		{"msgpack trailing", []byte{1, 2}, FormatMsgpack, ErrMalformed, "data after the value", 1},
		{"msgpack truncated array", []byte{0x92, 1}, FormatMsgpack, ErrMalformed, "truncated", 2},
		{"msgpack truncated str", []byte{0xa5, 'a'}, FormatMsgpack, ErrMalformed, "truncated", 2},
		{"msgpack truncated uint", []byte{0xcf, 1}, FormatMsgpack, ErrMalformed, "truncated", 2},
		{"msgpack truncated ext", []byte{0xc7}, FormatMsgpack, ErrMalformed, "truncated", 1},
		{"msgpack ext without type", []byte{0xc7, 1}, FormatMsgpack, ErrMalformed, "truncated", 2},
		{"msgpack fixext without type", []byte{0xd4}, FormatMsgpack, ErrMalformed, "truncated", 1},
		{"msgpack reserved", []byte{0x91, 0xc1}, FormatMsgpack, ErrMalformed, "0xc1", 1},
		{"msgpack int key", mpOf(t, map[int]int{1: 2}), FormatMsgpack, ErrNonStringKey, "an integer", 1},
		{"msgpack nil key", []byte{0x81, 0xc0, 1}, FormatMsgpack, ErrNonStringKey, "a nil", 1},
		{"msgpack bin key", []byte{0x81, 0xc4, 1, 'k', 1}, FormatMsgpack, ErrNonStringKey, "a binary", 1},
		{"msgpack nested int key", []byte{0x81, 0xa1, 'a', 0x81, 0x01, 0x02}, FormatMsgpack, ErrNonStringKey, "JSON keys are strings", 4},
		{"msgpack NaN", mpOf(t, math.NaN()), FormatMsgpack, ErrUnrepresentable, "NaN", 0},
		{"msgpack Inf32", mpOf(t, float32(math.Inf(-1))), FormatMsgpack, ErrUnrepresentable, "infinite", 0},
		{"msgpack ext", []byte{0xd5, 7, 0, 0}, FormatMsgpack, ErrUnrepresentable, "extension type 7", 0},
		{"msgpack bad timestamp length", []byte{0xd5, 0xff, 0, 0}, FormatMsgpack, ErrUnrepresentable, "timestamp", 0},
		{"msgpack timestamp nanos", []byte{0xc7, 12, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0}, FormatMsgpack, ErrUnrepresentable, "timestamp", 0},
		{"msgpack timestamp year", []byte{0xc7, 12, 0xff, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, FormatMsgpack, ErrUnrepresentable, "9999", 0},
		{"msgpack invalid UTF-8", []byte{0x91, 0xa2, 0xc3, 0x28}, FormatMsgpack, ErrMalformed, "UTF-8", 1},
		{"msgpack too deep", deepMP, FormatMsgpack, ErrTooDeep, "1000", MaxDepth},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			verr := ValidData(tt.in, tt.from)
			dst := []byte("keep")
			out, cerr := AppendConvert(dst, tt.in, tt.from, other(tt.from))
			if string(out) != "keep" {
				t.Errorf("failed AppendConvert returned %q", out)
			}
			for what, err := range map[string]error{"ValidData": verr, "Convert": cerr} {
				var de *DataError
				if !errors.Is(err, tt.want) || !errors.As(err, &de) {
					t.Fatalf("%s: %v, want %v", what, err, tt.want)
				}
				if !strings.Contains(err.Error(), tt.frag) || de.Offset != tt.offset {
					t.Fatalf("%s: %q (offset %d), want %q at offset %d", what, err, de.Offset, tt.frag, tt.offset)
				}
			}
		})
	}
}

func TestConvertSameFormat(t *testing.T) {
	bad := []byte(`not json`)
	got, err := Convert(bad, FormatJSON, FormatJSON)
	if err != nil || &got[0] != &bad[0] {
		t.Fatalf("Convert to the same format should return its input: %q, %v", got, err)
	}
	if _, err := AppendConvert(nil, bad, FormatJSON, FormatJSON); !errors.Is(err, ErrMalformed) {
		t.Fatalf("AppendConvert same format: %v, want ErrMalformed", err)
	}
	got, err = AppendConvert([]byte("x"), []byte{0x01}, FormatMsgpack, FormatMsgpack)
	if err != nil || string(got) != "x\x01" {
		t.Fatalf("AppendConvert same format: %q, %v", got, err)
	}
	for _, f := range [][2]Format{{0, FormatJSON}, {FormatJSON, 3}, {7, 7}} {
		if _, err := Convert([]byte("1"), f[0], f[1]); !errors.Is(err, ErrFormat) {
			t.Errorf("Convert(%v -> %v): %v, want ErrFormat", f[0], f[1], err)
		}
	}
	if err := ValidData([]byte("1"), 0); !errors.Is(err, ErrFormat) {
		t.Errorf("ValidData(format 0): %v", err)
	}
}

func TestConvertAppendsWithoutAllocating(t *testing.T) {
	j := []byte(`{"sym":"AAPL","px":[101.25,101.5],"n":-3,"ok":true,"s":"caf\u00e9"}`)
	m, err := Convert(j, FormatJSON, FormatMsgpack)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 0, 1024)
	for _, tt := range []struct {
		in       []byte
		from, to Format
	}{{j, FormatJSON, FormatMsgpack}, {m, FormatMsgpack, FormatJSON}} {
		if n := testing.AllocsPerRun(100, func() { _, _ = AppendConvert(buf, tt.in, tt.from, tt.to) }); n != 0 {
			t.Errorf("%v -> %v: %v allocations", tt.from, tt.to, n)
		}
	}
}
