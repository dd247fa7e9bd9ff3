package broker

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		url  string
		want endpoint
		err  string // substring of the error; "" for success
	}{
		{"", endpoint{kind: kindMemory}, ""},
		{"memory", endpoint{kind: kindMemory}, ""},
		{"redis://127.0.0.1:6379", endpoint{kind: kindRedis, addrs: []string{"127.0.0.1:6379"}}, ""},
		{"redis://localhost:6379/3", endpoint{kind: kindRedis, addrs: []string{"localhost:6379"}, db: 3}, ""},
		{"redis://u:p%40ss@h:1/0", endpoint{kind: kindRedis, addrs: []string{"h:1"}, username: "u", password: "p@ss"}, ""},
		{"redis://:secret@h:1", endpoint{kind: kindRedis, addrs: []string{"h:1"}, password: "secret"}, ""},
		{"redis://[::1]:6379", endpoint{kind: kindRedis, addrs: []string{"[::1]:6379"}}, ""},
		{"redis-cluster://a:1,b:2,c:3", endpoint{kind: kindRedisCluster, addrs: []string{"a:1", "b:2", "c:3"}}, ""},
		{"nats://a:4222", endpoint{kind: kindNATS, addrs: []string{"nats://a:4222"}}, ""},
		{"nats://a:4222,nats://b:4223", endpoint{kind: kindNATS, addrs: []string{"nats://a:4222", "nats://b:4223"}}, ""},

		{"redis", endpoint{}, "no scheme"},
		{"kafka://a:1", endpoint{}, "unknown scheme"},
		{"redis://a:1,b:2", endpoint{}, "one address"},
		{"redis://a", endpoint{}, "host:port"},
		{"redis://:1", endpoint{}, "host:port"},
		{"redis://a:0", endpoint{}, "bad port"},
		{"redis://a:99999", endpoint{}, "bad port"},
		{"redis://a:x", endpoint{}, "bad port"},
		{"redis://a:1/x", endpoint{}, "database"},
		{"redis://a:1/-1", endpoint{}, "database"},
		{"redis://a:1?x=1", endpoint{}, "query"},
		{"redis-cluster://a:1,b:2/0", endpoint{}, "no database"},
		{"redis-cluster://a:1,", endpoint{}, "host:port"},
		{"nats://a", endpoint{}, "nats://host:port"},
		{"nats://a:1,b:2", endpoint{}, "nats://host:port"},
		{"nats://a:1/x", endpoint{}, "nats://host:port"},
		{"nats://a:0", endpoint{}, "bad port"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			got, err := parseURL(tt.url)
			if tt.err != "" {
				if !errors.Is(err, ErrBadURL) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want ErrBadURL mentioning %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if got.kind != tt.want.kind || !slices.Equal(got.addrs, tt.want.addrs) || got.username != tt.want.username ||
				got.password != tt.want.password || got.db != tt.want.db {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestBadURLHidesPassword(t *testing.T) {
	_, err := parseURL("redis://user:hunter2@a:1/x")
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("err = %v: want an error without the password", err)
	}
}

func TestOpenRefuses(t *testing.T) {
	h := func(string, []byte) {}
	// A port that was just free: nothing listens there.
	dead := "127.0.0.1:1"
	tests := []struct {
		name string
		url  string
		h    Handler
		want error
	}{
		{"nil handler", "memory", nil, ErrNilHandler},
		{"bad URL", "tcp://x:1", h, ErrBadURL},
		{"redis down", "redis://" + dead, h, ErrUnavailable},
		{"cluster down", "redis-cluster://" + dead, h, ErrUnavailable},
		{"nats down", "nats://" + dead, h, ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Open(tt.url, tt.h, testOptions)
			if !errors.Is(err, tt.want) {
				if b != nil {
					b.Close()
				}
				t.Fatalf("Open(%q) = %v, want %v", tt.url, err, tt.want)
			}
		})
	}
}

func TestOpenMemory(t *testing.T) {
	in := newInbox()
	b, err := Open("", in.handle, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, ok := b.(*Memory); !ok {
		t.Fatalf("Open(\"\") = %T, want *Memory", b)
	}
}

// FuzzParseURL: no input panics, and what parses is usable: at least one
// address, each with a port, and a known kind.
func FuzzParseURL(f *testing.F) {
	for _, s := range []string{
		"", "memory", "redis://a:1", "redis://u:p@a:1/2", "redis-cluster://a:1,b:2",
		"nats://a:1,nats://b:2", "redis://[::1]:1", "redis://a:1,", "nats://", "::", "redis://@:",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ep, err := parseURL(s)
		if err != nil {
			if !errors.Is(err, ErrBadURL) {
				t.Fatalf("error %v is not ErrBadURL", err)
			}
			return
		}
		switch ep.kind {
		case kindMemory:
			if len(ep.addrs) != 0 {
				t.Fatalf("memory with addresses %v", ep.addrs)
			}
		case kindRedis, kindRedisCluster, kindNATS:
			if len(ep.addrs) == 0 {
				t.Fatalf("%q parsed with no address", s)
			}
			if ep.kind == kindRedis && len(ep.addrs) != 1 {
				t.Fatalf("%q: redis with %d addresses", s, len(ep.addrs))
			}
			if ep.db < 0 {
				t.Fatalf("%q: negative db", s)
			}
		default:
			t.Fatalf("unknown kind %d", ep.kind)
		}
	})
}
