package proto

import (
	"math"
	"strconv"
	"unicode/utf8"
	"unsafe"
)

// The JSON scanner works on byte offsets into the input so that values can
// be returned as spans of it (request data is forwarded verbatim). It
// enforces RFC 8259 plus two rules the gateway needs: strings are valid
// UTF-8 (a text frame with bad UTF-8 makes browsers drop the connection)
// and numbers fit a float64 (so every value converts to MessagePack).

func jsonSkipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// describe names the byte at b[i] for an error message.
func describe(b []byte, i int) string {
	if i >= len(b) {
		return "end of input"
	}
	if c := b[i]; c > 0x20 && c < 0x7f {
		return "'" + string(c) + "'"
	}
	return "byte 0x" + strconv.FormatUint(uint64(b[i]), 16)
}

func jsonUnexpected(b []byte, i int, want string) *DataError {
	if i >= len(b) {
		return dataErr(ErrMalformed, i, "unexpected end of input")
	}
	r := "unexpected " + describe(b, i)
	if want != "" {
		r += ", want " + want
	}
	return dataErr(ErrMalformed, i, r)
}

// jsonValue checks the value starting at b[i] and returns the offset just
// past it. depth counts the arrays and objects already open around it.
func jsonValue(b []byte, i, depth int) (int, error) {
	if i >= len(b) {
		return i, jsonUnexpected(b, i, "")
	}
	switch c := b[i]; {
	case c == '{':
		return jsonObject(b, i, depth+1)
	case c == '[':
		return jsonArray(b, i, depth+1)
	case c == '"':
		end, _, err := jsonString(b, i)
		return end, err
	case c == 't':
		return jsonLiteral(b, i, "true")
	case c == 'f':
		return jsonLiteral(b, i, "false")
	case c == 'n':
		return jsonLiteral(b, i, "null")
	case c == '-' || c >= '0' && c <= '9':
		end, _, err := jsonNumber(b, i)
		return end, err
	}
	return i, jsonUnexpected(b, i, "a value")
}

func jsonObject(b []byte, i, depth int) (int, error) {
	if depth > MaxDepth {
		return i, dataErr(ErrTooDeep, i, "nesting deeper than "+strconv.Itoa(MaxDepth))
	}
	i = jsonSkipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, nil
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return i, jsonUnexpected(b, i, "a string key")
		}
		var err error
		if i, _, err = jsonString(b, i); err != nil {
			return i, err
		}
		i = jsonSkipWS(b, i)
		if i >= len(b) || b[i] != ':' {
			return i, jsonUnexpected(b, i, "':'")
		}
		if i, err = jsonValue(b, jsonSkipWS(b, i+1), depth); err != nil {
			return i, err
		}
		i = jsonSkipWS(b, i)
		if i >= len(b) {
			return i, jsonUnexpected(b, i, "")
		}
		switch b[i] {
		case ',':
			i = jsonSkipWS(b, i+1)
		case '}':
			return i + 1, nil
		default:
			return i, jsonUnexpected(b, i, "',' or '}'")
		}
	}
}

func jsonArray(b []byte, i, depth int) (int, error) {
	if depth > MaxDepth {
		return i, dataErr(ErrTooDeep, i, "nesting deeper than "+strconv.Itoa(MaxDepth))
	}
	i = jsonSkipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1, nil
	}
	for {
		var err error
		if i, err = jsonValue(b, i, depth); err != nil {
			return i, err
		}
		i = jsonSkipWS(b, i)
		if i >= len(b) {
			return i, jsonUnexpected(b, i, "")
		}
		switch b[i] {
		case ',':
			i = jsonSkipWS(b, i+1)
		case ']':
			return i + 1, nil
		default:
			return i, jsonUnexpected(b, i, "',' or ']'")
		}
	}
}

func jsonLiteral(b []byte, i int, lit string) (int, error) {
	for k := 0; k < len(lit); k++ {
		if i+k >= len(b) || b[i+k] != lit[k] {
			return i + k, jsonUnexpected(b, i+k, "")
		}
	}
	return i + len(lit), nil
}

// jsonString checks the string whose opening quote is b[i] and returns the
// offset past its closing quote and whether it holds escapes.
func jsonString(b []byte, i int) (end int, escaped bool, err error) {
	i++
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			return i + 1, escaped, nil
		case c == '\\':
			escaped = true
			if i+1 >= len(b) {
				return i + 1, escaped, jsonUnexpected(b, i+1, "")
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				for k := i + 2; k < i+6; k++ {
					if k >= len(b) || hexVal(b[k]) < 0 {
						return k, escaped, jsonUnexpected(b, k, "a hex digit")
					}
				}
				i += 6
			default:
				return i + 1, escaped, dataErr(ErrMalformed, i+1, "invalid escape \\"+describe(b, i+1))
			}
		case c < 0x20:
			return i, escaped, dataErr(ErrMalformed, i, "control character in string")
		case c < utf8.RuneSelf:
			i++
		default:
			r, n := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && n == 1 {
				return i, escaped, dataErr(ErrMalformed, i, "string is not valid UTF-8")
			}
			i += n
		}
	}
	return i, escaped, jsonUnexpected(b, i, "")
}

func hexVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// jsonNumber checks the number starting at b[i]; isInt reports that it has
// neither fraction nor exponent.
func jsonNumber(b []byte, i int) (end int, isInt bool, err error) {
	start := i
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return i, false, jsonUnexpected(b, i, "a digit")
	}
	isInt = true
	exp := false
	if i < len(b) && b[i] == '.' {
		isInt = false
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return i, false, jsonUnexpected(b, i, "a digit")
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		isInt, exp = false, true
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return i, false, jsonUnexpected(b, i, "a digit")
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	// Only an exponent or over 308 digits can exceed float64; parsing every
	// number to find out would be wasted work.
	if exp || i-start > 308 {
		if _, ok := parseFloat(b[start:i]); !ok {
			return i, false, errNumberRange(start)
		}
	}
	return i, isInt, nil
}

func errNumberRange(off int) *DataError {
	return dataErr(ErrUnrepresentable, off, "number out of float64 range")
}

// parseFloat parses a number the scanner accepted; it fails only for
// magnitudes beyond float64 (underflow rounds to zero, as in JavaScript).
func parseFloat(num []byte) (float64, bool) {
	f, err := strconv.ParseFloat(bstr(num), 64)
	if err != nil || math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

// bstr views b as a string without copying, for read-only use by functions
// that do not retain their argument (strconv, utf8, switch lookups).
func bstr(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// appendUnescaped appends the decoded content of a checked JSON string body
// (the bytes between the quotes). A lone UTF-16 surrogate becomes U+FFFD, as
// encoding/json does, so the result is always valid UTF-8.
func appendUnescaped(dst, s []byte) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c != '\\' {
			j := i + 1
			for j < len(s) && s[j] != '\\' {
				j++
			}
			dst = append(dst, s[i:j]...)
			i = j
			continue
		}
		switch s[i+1] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := hex4(s[i+2:])
			i += 6
			if r >= 0xd800 && r < 0xdc00 && i+6 <= len(s) && s[i] == '\\' && s[i+1] == 'u' {
				if lo := hex4(s[i+2:]); lo >= 0xdc00 && lo < 0xe000 {
					r = 0x10000 + (r-0xd800)<<10 + (lo - 0xdc00)
					i += 6
				}
			}
			// utf8.AppendRune writes U+FFFD for a surrogate left unpaired.
			dst = utf8.AppendRune(dst, r)
			continue
		default: // '"', '\\', '/'
			dst = append(dst, s[i+1])
		}
		i += 2
	}
	return dst
}

func hex4(s []byte) rune {
	return rune(hexVal(s[0])<<12 | hexVal(s[1])<<8 | hexVal(s[2])<<4 | hexVal(s[3]))
}

// jsonSafe marks the ASCII bytes a JSON string can hold unescaped.
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a quoted JSON string. Invalid UTF-8 becomes
// \ufffd so the output is always valid in a text frame.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if jsonSafe[c] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += n
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendJSONFloat writes f the way JavaScript and encoding/json do, then
// makes sure it still reads back as a float: "1" would turn a float into an
// integer on the way back to MessagePack, so it becomes "1.0".
func appendJSONFloat(dst []byte, f float64, bits int) []byte {
	start := len(dst)
	format := byte('f')
	if abs := math.Abs(f); abs != 0 {
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) || bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	dst = strconv.AppendFloat(dst, f, format, -1, bits)
	if format == 'e' {
		// Clean up e-09 to e-9, as JavaScript prints it.
		if n := len(dst); n-start >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
		return dst
	}
	for _, c := range dst[start:] {
		if c == '.' {
			return dst
		}
	}
	return append(dst, '.', '0')
}
