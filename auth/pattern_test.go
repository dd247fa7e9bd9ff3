package auth

import (
	"errors"
	"strings"
	"testing"
)

func TestParsePatternInvalid(t *testing.T) {
	for _, s := range []string{
		"", ".", "a.", ".a", "a..b", "a.>.b", ">.a", "*x", "x*", ">x", "x>", "a.b>", "a.**", "a.>>", "**", "a.*b.c",
	} {
		t.Run(s, func(t *testing.T) {
			p, err := ParsePattern(s)
			if !errors.Is(err, ErrBadPattern) {
				t.Fatalf("ParsePattern(%q) = %v, %v; want ErrBadPattern", s, p, err)
			}
			if !strings.Contains(err.Error(), "auth: bad topic pattern") {
				t.Fatalf("error %q lacks the package prefix", err)
			}
		})
	}
}

func TestPatternMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		yes, no []string
	}{
		{"alerts", []string{"alerts"}, []string{"", "alert", "alerts.x", "x.alerts", "alertsx", "*", ">"}},
		{"a.b", []string{"a.b"}, []string{"a", "a.bc", "a.b.c", "a.b.", "ab"}},
		{"prices.*", []string{"prices.btc", "prices.*", "prices.>"}, []string{"prices", "prices.", "prices.btc.usd", "prices..x", "x.btc", "pricesx.btc"}},
		{"user.42.>", []string{"user.42.a", "user.42.a.b", "user.42.a.b.c.d"}, []string{"user.42", "user.42.", "user.43.a", "user.42.a..b", "user.42.a.", "user.42..a", "user"}},
		{">", []string{"a", "a.b", "a.b.c", ">"}, []string{"", ".", ".a", "a.", "a..b"}},
		{"*", []string{"a", "abc"}, []string{"", "a.b", ".", ".a"}},
		{"*.*", []string{"a.b"}, []string{"a", "a.b.c", "a.", ".b"}},
		{"a.*.c", []string{"a.b.c", "a.x.c"}, []string{"a..c", "a.b.d", "a.b.c.d", "a.c", "b.b.c"}},
		{"*.>", []string{"a.b", "a.b.c"}, []string{"a", "a.", ".b"}},
		{"*.b.>", []string{"a.b.c", "x.b.c.d"}, []string{"a.b", "a.c.d", "a.b."}},
	} {
		t.Run(tc.pattern, func(t *testing.T) {
			p, err := ParsePattern(tc.pattern)
			if err != nil {
				t.Fatal(err)
			}
			if p.String() != tc.pattern {
				t.Fatalf("String() = %q", p.String())
			}
			for _, topic := range tc.yes {
				if !p.Match(topic) {
					t.Errorf("%q should match %q", tc.pattern, topic)
				}
			}
			for _, topic := range tc.no {
				if p.Match(topic) {
					t.Errorf("%q should not match %q", tc.pattern, topic)
				}
			}
		})
	}
}

func TestZeroPatternMatchesNothing(t *testing.T) {
	var p Pattern
	for _, topic := range []string{"", "a", "a.b"} {
		if p.Match(topic) {
			t.Fatalf("zero Pattern matched %q", topic)
		}
	}
}

func TestPatternsAllows(t *testing.T) {
	ps, err := ParsePatterns([]string{"prices.*", "user.42.>", "alerts"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		topic string
		want  bool
	}{
		{"prices.btc", true},
		{"user.42.inbox", true},
		{"alerts", true},
		{"user.43.inbox", false},
		{"prices", false},
		{"", false},
	} {
		if got := ps.Allows(tc.topic); got != tc.want {
			t.Errorf("Allows(%q) = %v, want %v", tc.topic, got, tc.want)
		}
	}
	var none Patterns
	if none.Allows("a") {
		t.Error("empty Patterns allowed a topic")
	}
	if ps, err := ParsePatterns(nil); ps != nil || err != nil {
		t.Errorf("ParsePatterns(nil) = %v, %v", ps, err)
	}
	if _, err := ParsePatterns([]string{"ok", "a.>.b"}); !errors.Is(err, ErrBadPattern) || !strings.Contains(err.Error(), `"a.>.b"`) {
		t.Errorf("ParsePatterns with a bad entry: %v", err)
	}
}

func TestPatternMatchAllocatesNothing(t *testing.T) {
	ps, err := ParsePatterns([]string{"a.b.c", "prices.*", "user.*.>"})
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() {
		ps.Allows("user.42.inbox.x")
		ps.Allows("nope.nope")
	}); n != 0 {
		t.Fatalf("Allows allocates %v times per run", n)
	}
}

// refValid is the pattern grammar written the obvious way.
func refValid(pattern string) bool {
	if pattern == "" {
		return false
	}
	segs := strings.Split(pattern, ".")
	for i, s := range segs {
		if s == "" || (s != "*" && s != ">" && strings.ContainsAny(s, "*>")) || (s == ">" && i != len(segs)-1) {
			return false
		}
	}
	return true
}

// refMatch is the matching rule written the obvious way, with slices.
func refMatch(pattern, topic string) bool {
	ps, ts := strings.Split(pattern, "."), strings.Split(topic, ".")
	for _, s := range ts {
		if s == "" {
			return false
		}
	}
	for i, p := range ps {
		if p == ">" {
			return len(ts) > i
		}
		if i >= len(ts) || (p != "*" && p != ts[i]) {
			return false
		}
	}
	return len(ps) == len(ts)
}

func FuzzPatternMatch(f *testing.F) {
	for _, s := range [][2]string{
		{"prices.*", "prices.btc"}, {"user.42.>", "user.42.a.b"}, {">", "a"}, {"alerts", "alerts"},
		{"a.*.c", "a..c"}, {"*", ""}, {"a.>.b", "a.x.b"}, {"*x", "ax"}, {"a..b", "a..b"}, {"", ""},
		{"*.>", "a."}, {">", ".a"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, topic string) {
		p, err := ParsePattern(pattern)
		if (err == nil) != refValid(pattern) {
			t.Fatalf("ParsePattern(%q) err = %v, reference validity %v", pattern, err, refValid(pattern))
		}
		if err != nil {
			if p.Match(topic) {
				t.Fatalf("zero Pattern from failed parse matched %q", topic)
			}
			return
		}
		if got, want := p.Match(topic), refMatch(pattern, topic); got != want {
			t.Fatalf("%q.Match(%q) = %v, reference %v", pattern, topic, got, want)
		}
	})
}

func benchmarkMatch(b *testing.B, pattern, topic string, want bool) {
	p, err := ParsePattern(pattern)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if p.Match(topic) != want {
			b.Fatal("wrong result")
		}
	}
}

func BenchmarkPatternMatch_Literal(b *testing.B) {
	benchmarkMatch(b, "prices.btc.usd", "prices.btc.usd", true)
}
func BenchmarkPatternMatch_Star(b *testing.B) {
	benchmarkMatch(b, "prices.*.usd", "prices.btc.usd", true)
}
func BenchmarkPatternMatch_Tail(b *testing.B) {
	benchmarkMatch(b, "user.42.>", "user.42.inbox.unread", true)
}
func BenchmarkPatternMatch_Miss(b *testing.B) { benchmarkMatch(b, "user.42.>", "user.43.inbox", false) }

func benchmarkAllows(b *testing.B, n int) {
	list := make([]string, 0, n)
	for i := range n - 1 {
		list = append(list, "room."+strings.Repeat("x", i%7+1)+".*")
	}
	list = append(list, "user.42.>")
	ps, err := ParsePatterns(list)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if !ps.Allows("user.42.inbox") {
			b.Fatal("not allowed")
		}
	}
}

func BenchmarkPatternsAllows_1(b *testing.B)  { benchmarkAllows(b, 1) }
func BenchmarkPatternsAllows_10(b *testing.B) { benchmarkAllows(b, 10) }

func TestExpandUser(t *testing.T) {
	grant := []string{"user.{user}.>", "public.*", "room.{user}"}
	for _, tc := range []struct {
		user  string
		allow []string
		deny  []string
	}{
		{"42", []string{"user.42.inbox", "public.x", "room.42"}, []string{"user.43.inbox", "user.{user}.inbox", "room.43"}},
		{"ada-lovelace", []string{"user.ada-lovelace.a"}, []string{"user.ada.a"}},
		// Subjects that are not one segment grant nothing through the placeholder.
		{"42.inbox", []string{"public.x"}, []string{"user.42.inbox.a", "user.42.a"}},
		{"", []string{"public.x"}, []string{"user..a", "user.{user}.a"}},
		{"*", []string{"public.x"}, []string{"user.x.a"}},
		{">", []string{"public.x"}, []string{"user.x.a"}},
		{"a b", []string{"public.x"}, []string{"user.a b.x"}},
	} {
		ps, err := ParsePatterns(ExpandUser(grant, tc.user))
		if err != nil {
			t.Fatalf("user %q: %v", tc.user, err)
		}
		for _, topic := range tc.allow {
			if !ps.Allows(topic) {
				t.Errorf("user %q: %q refused", tc.user, topic)
			}
		}
		for _, topic := range tc.deny {
			if ps.Allows(topic) {
				t.Errorf("user %q: %q allowed", tc.user, topic)
			}
		}
	}
	if got := ExpandUser([]string{"a.b"}, "x"); len(got) != 1 || got[0] != "a.b" {
		t.Errorf("a list without the placeholder changed: %v", got)
	}
}
