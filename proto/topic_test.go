package proto

import (
	"errors"
	"strings"
	"testing"
)

func TestValidTopic(t *testing.T) {
	tests := []struct {
		topic string
		frag  string // empty: valid
	}{
		{"a", ""},
		{"prices.AAPL", ""},
		{"a.b.c.d", ""},
		{strings.Repeat("x", 256), ""},
		{strings.Repeat("a.", 127) + "bc", ""},
		{"!\"#$%&'()+,-/:;<=?@[\\]^_`{|}~", ""},
		{"a*b.c>d.*x.y>", ""},
		{"", "empty"},
		{strings.Repeat("x", 257), "longer than 256"},
		{".a", "empty segment"},
		{"a.", "empty segment"},
		{"a..b", "empty segment"},
		{".", "empty segment"},
		{"a b", "a space at offset 1"},
		{"a\tb", "byte 0x9"},
		{"a\x7f", "byte 0x7f"},
		{"caf\xc3\xa9", "byte 0xc3 at offset 3"},
		{"\x00", "byte 0x0"},
		{"*", `wildcard segment "*"`},
		{">", `wildcard segment ">"`},
		{"a.*", "wildcard"},
		{"*.a", "wildcard"},
		{"a.>.b", "wildcard"},
	}
	for _, tt := range tests {
		err := ValidTopic(tt.topic)
		if tt.frag == "" {
			if err != nil {
				t.Errorf("ValidTopic(%q) = %v", tt.topic, err)
			}
			continue
		}
		var pe *Error
		if !errors.As(err, &pe) || pe.Code != CodeInvalidTopic || !strings.Contains(pe.Msg, tt.frag) {
			t.Errorf("ValidTopic(%q) = %v, want invalid_topic mentioning %q", tt.topic, err, tt.frag)
		}
		if tt.topic != "" && len(tt.topic) <= 64 && !strings.Contains(pe.Msg, `"`) {
			t.Errorf("ValidTopic(%q): message %q does not quote the topic", tt.topic, pe.Msg)
		}
	}
}

// A huge bad topic is not echoed back in full.
func TestTopicErrorIsShort(t *testing.T) {
	err := ValidTopic(strings.Repeat("x", 10000))
	if err == nil || len(err.Error()) > 200 {
		t.Fatalf("error %d bytes long: %.80v", len(err.Error()), err)
	}
}

func TestValidTopicAllocatesNothing(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _ = ValidTopic("prices.AAPL.bid") }); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}
