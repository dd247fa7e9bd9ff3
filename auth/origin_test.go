package auth

import (
	"errors"
	"testing"
)

func TestParseOriginsInvalid(t *testing.T) {
	for _, csv := range []string{
		"https://example.com", "example.com/", "example.com/path", "*.example.com", "user@example.com",
		"example.com:", "example.com:port", "a.com,,b.com", "exa mple.com", ":8080", "example.com?x",
	} {
		t.Run(csv, func(t *testing.T) {
			if o, err := ParseOrigins(csv); !errors.Is(err, ErrBadOrigin) {
				t.Fatalf("ParseOrigins(%q) = %+v, %v; want ErrBadOrigin", csv, o, err)
			}
		})
	}
}

func TestOriginsAllowed(t *testing.T) {
	type check struct {
		origin, host string
		want         bool
	}
	for _, tc := range []struct {
		csv    string
		checks []check
	}{
		{"", []check{
			{"", "gw.test", true},
			{"https://gw.test", "gw.test", true},
			{"https://GW.test", "gw.TEST", true},
			{"http://gw.test:8080", "gw.test:8080", true},
			{"https://gw.test:8443", "gw.test", false},
			{"https://evil.test", "gw.test", false},
			{"null", "gw.test", false},
			{"https://evil.test", "", false},
		}},
		{"*", []check{
			{"https://anything.test", "gw.test", true},
			{"null", "gw.test", true},
			{"", "gw.test", true},
		}},
		{" example.com , app.example.com:8443,[::1]:9000 ", []check{
			{"https://example.com", "gw.test", true},
			{"http://EXAMPLE.com", "gw.test", true},
			{"https://app.example.com:8443", "gw.test", true},
			{"https://app.example.com", "gw.test", false},
			{"https://example.com:8443", "gw.test", false},
			{"http://[::1]:9000", "gw.test", true},
			{"https://sub.example.com", "gw.test", false},
			{"https://example.com.evil.test", "gw.test", false},
			{"https://evilexample.com", "gw.test", false},
			{"https://example.com/path", "gw.test", false},
			{"https://user@example.com", "gw.test", false},
			{"example.com", "gw.test", false},
			{"https://", "gw.test", false},
			{"https://gw.test", "gw.test", true},
			{"", "gw.test", true},
		}},
		{"example.com,*", []check{
			{"https://other.test", "gw.test", true},
		}},
	} {
		t.Run(tc.csv, func(t *testing.T) {
			o, err := ParseOrigins(tc.csv)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range tc.checks {
				if got := o.Allowed(c.origin, c.host); got != c.want {
					t.Errorf("Allowed(%q, %q) = %v, want %v", c.origin, c.host, got, c.want)
				}
			}
		})
	}
}

func TestZeroOrigins(t *testing.T) {
	var o Origins
	if !o.Allowed("", "h") || !o.Allowed("https://h", "h") || o.Allowed("https://x", "h") {
		t.Fatal("zero Origins should allow only no origin and the same host")
	}
}

func TestOriginsAllowedAllocatesNothing(t *testing.T) {
	o, err := ParseOrigins("a.test,b.test:8443")
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() {
		o.Allowed("https://b.test:8443", "gw.test")
		o.Allowed("https://c.test", "gw.test")
	}); n != 0 {
		t.Fatalf("Allowed allocates %v times per run", n)
	}
}
