package auth

import (
	"fmt"
	"strings"
)

// Pattern is a topic pattern. Topics are '.'-separated segments; in a
// pattern "*" matches exactly one segment and ">" (last segment only)
// matches one or more remaining segments: "prices.*", "user.42.>",
// "alerts", ">". Wildcards never match an empty segment, so a topic with
// an empty segment ("a..b", ".a", "") matches no pattern at all. The zero
// Pattern matches nothing.
type Pattern struct {
	raw     string
	segs    []string
	literal bool // no wildcard: Match is a string compare
}

// ParsePattern parses s. The error wraps ErrBadPattern and says why.
func ParsePattern(s string) (Pattern, error) {
	bad := func(reason string) (Pattern, error) {
		return Pattern{}, fmt.Errorf("%w %q: %s", ErrBadPattern, s, reason)
	}
	if s == "" {
		return bad("empty")
	}
	segs := strings.Split(s, ".")
	literal := true
	for i, seg := range segs {
		switch {
		case seg == "":
			return bad("empty segment")
		case seg == "*":
			literal = false
		case seg == ">":
			if i != len(segs)-1 {
				return bad("'>' is allowed only as the last segment")
			}
			literal = false
		case strings.ContainsAny(seg, "*>"):
			return bad("a wildcard must be a whole segment")
		}
	}
	return Pattern{raw: s, segs: segs, literal: literal}, nil
}

// String returns the pattern as it was parsed.
func (p Pattern) String() string { return p.raw }

// Match reports whether topic matches the pattern. It allocates nothing.
func (p Pattern) Match(topic string) bool {
	if p.literal {
		return topic == p.raw
	}
	rest := topic
	for i, seg := range p.segs {
		last := i == len(p.segs)-1
		switch seg {
		case ">":
			return wellFormed(rest)
		case "*":
			j := strings.IndexByte(rest, '.')
			if j < 0 {
				return last && rest != ""
			}
			if j == 0 || last {
				return false
			}
			rest = rest[j+1:]
		default:
			// A literal is a prefix compare; no need to find the dot.
			n := len(seg)
			if len(rest) < n || rest[:n] != seg {
				return false
			}
			if len(rest) == n {
				return last
			}
			if last || rest[n] != '.' {
				return false
			}
			rest = rest[n+1:]
		}
	}
	return false // only the zero Pattern gets here
}

// wellFormed reports whether s is one or more non-empty segments.
func wellFormed(s string) bool {
	return s != "" && s[0] != '.' && s[len(s)-1] != '.' && !strings.Contains(s, "..")
}

// Patterns is a grant: a topic is allowed when any pattern matches it.
// An empty Patterns allows nothing.
type Patterns []Pattern

// ParsePatterns parses every entry of list; the first bad one is the error.
// An empty list gives a nil Patterns.
func ParsePatterns(list []string) (Patterns, error) {
	if len(list) == 0 {
		return nil, nil
	}
	ps := make(Patterns, 0, len(list))
	for _, s := range list {
		p, err := ParsePattern(s)
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// Allows reports whether any pattern matches topic. It allocates nothing.
func (ps Patterns) Allows(topic string) bool {
	for i := range ps {
		if ps[i].Match(topic) {
			return true
		}
	}
	return false
}

// UserPlaceholder in a grant pattern stands for the token's subject: a
// token granting "user.{user}.>" lets user 42 use "user.42.inbox" and
// nobody else's.
const UserPlaceholder = "{user}"

// ExpandUser returns list with UserPlaceholder replaced by user in every
// pattern. A pattern that names the placeholder is dropped (it grants
// nothing) when user cannot be one topic segment: empty, a wildcard, or
// holding a '.', a space or a byte outside printable ASCII; otherwise a
// subject such as "42.inbox" would reach into user 42's topics.
func ExpandUser(list []string, user string) []string {
	if !HasUserPlaceholder(list) {
		return list
	}
	ok := validSegment(user)
	out := make([]string, 0, len(list))
	for _, p := range list {
		if !strings.Contains(p, UserPlaceholder) {
			out = append(out, p)
		} else if ok {
			out = append(out, strings.ReplaceAll(p, UserPlaceholder, user))
		}
	}
	return out
}

// HasUserPlaceholder reports whether any pattern of list names
// UserPlaceholder.
func HasUserPlaceholder(list []string) bool {
	for _, p := range list {
		if strings.Contains(p, UserPlaceholder) {
			return true
		}
	}
	return false
}

func validSegment(s string) bool {
	if s == "" || s == "*" || s == ">" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == '.' {
			return false
		}
	}
	return true
}
