package broker

import (
	"errors"
	"strings"
	"testing"
)

func TestValidSubject(t *testing.T) {
	tests := []struct {
		subject string
		want    bool
	}{
		{"a", true},
		{"a.b.c", true},
		{"chat/room:1", true},
		{"a*b.c>d", true}, // wildcards only as whole tokens
		{"ünïcode.tópico", true},
		{"", false},
		{".", false},
		{"a.", false},
		{".a", false},
		{"a..b", false},
		{"*", false},
		{"a.*", false},
		{"a.>", false},
		{">", false},
		{"a b", false},
		{"a\tb", false},
		{"a\r\nPUB x 1", false},
	}
	for _, tt := range tests {
		if got := validSubject(tt.subject); got != tt.want {
			t.Errorf("validSubject(%q) = %v, want %v", tt.subject, got, tt.want)
		}
	}
}

// validSubjectSlow restates the rule with strings.Split.
func validSubjectSlow(s string) bool {
	if s == "" || strings.ContainsAny(s, " \t\r\n\f\v") {
		return false
	}
	for _, tok := range strings.Split(s, ".") {
		if tok == "" || tok == "*" || tok == ">" {
			return false
		}
	}
	return true
}

func FuzzValidSubject(f *testing.F) {
	for _, s := range []string{"", "a", "a.b", "a..b", "*", "a.>", "a b", ".", "a*"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := validSubject(s), validSubjectSlow(s); got != want {
			t.Fatalf("validSubject(%q) = %v, want %v", s, got, want)
		}
	})
}

// A topic NATS cannot carry literally is refused, not sent as a wildcard
// or a broken protocol line.
func TestNATSRefusesBadTopics(t *testing.T) {
	bb := natsBackbone(t)
	in := newInbox()
	b := bb.open(t, in.handle)
	ctx := ctxFor(t)
	if err := b.Subscribe(ctx, "bt.ok", "bt.*", "bt. x"); !errors.Is(err, ErrBadTopic) {
		t.Fatalf("Subscribe = %v, want ErrBadTopic", err)
	}
	expectUpstream(t, bb, "bt.", ones("bt.ok"))
	if err := b.Publish(ctx, "bt.ok x", []byte("y")); !errors.Is(err, ErrBadTopic) {
		t.Fatalf("Publish = %v, want ErrBadTopic", err)
	}
	mustPublish(t, b, "bt.ok", "fine")
	in.waitFor(t, "the valid topic", func(m []message) bool { return len(m) == 1 })
}
