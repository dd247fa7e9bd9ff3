package policy

import (
	"net/http"
	"testing"
	"time"

	"github.com/subsock/subsock/auth"
	"github.com/subsock/subsock/frame"
	"github.com/subsock/subsock/proto"
)

// Identify decides in order: draining, origin, credentials. Each refusal
// carries the status, header and close code its client needs.
func TestIdentify(t *testing.T) {
	open, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	jwt, err := New(Config{JWT: auth.Config{Secret: []byte("0123456789abcdef0123456789abcdef")}, AllowedOrigins: "app.example"})
	if err != nil {
		t.Fatal(err)
	}
	defer jwt.Close()
	for _, tt := range []struct {
		name     string
		p        *Policy
		draining bool
		req      Request
		status   int
		code     int
	}{
		{"open node", open, false, Request{}, 0, 0},
		{"draining", open, true, Request{}, http.StatusServiceUnavailable, int(frame.StatusTryLater)},
		{"cross-site origin", open, false, Request{Origin: "https://evil.example", Host: "node.example"}, http.StatusForbidden, int(frame.StatusDisconnected)},
		{"same-host origin", open, false, Request{Origin: "https://node.example", Host: "node.example"}, 0, 0},
		{"allowed origin, no token", jwt, false, Request{Origin: "https://app.example", Host: "node.example"}, http.StatusUnauthorized, int(frame.StatusTokenExpired)},
		{"bad token", jwt, false, Request{Query: "token=nope"}, http.StatusUnauthorized, int(frame.StatusTokenExpired)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			gr, _, ref, kp := tt.p.Identify(tt.draining, tt.req)
			switch {
			case kp != nil:
				t.Fatalf("key pending: %v", kp)
			case tt.status == 0 && (ref != nil || gr != tt.p.Everything):
				t.Fatalf("refused %+v, grants %+v; want everything", ref, gr)
			case tt.status != 0 && (ref == nil || ref.Status != tt.status || int(ref.Code) != tt.code):
				t.Fatalf("refusal %+v; want status %d, close code %d", ref, tt.status, tt.code)
			}
			if ref != nil && ref.Status == http.StatusUnauthorized && ref.Header == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
		})
	}
}

// Grants: {user} patterns bind to the token's subject; anonymous patterns
// cannot use it; reserved topics are nobody's.
func TestAuthorizeAndGrants(t *testing.T) {
	if _, err := New(Config{AnonymousSubs: []string{"user.{user}.>"}}); err == nil {
		t.Fatal("anonymous {user} pattern accepted")
	}
	p, err := New(Config{AnonymousSubs: []string{"public.>"}, AnonymousPubs: []string{"chat.*"}})
	if err != nil {
		t.Fatal(err)
	}
	anon := p.Anon
	for _, tt := range []struct {
		topic string
		pub   bool
		code  proto.Code
	}{
		{"public.news", false, ""},
		{"public.news", true, proto.CodeForbidden},
		{"chat.room", true, ""},
		{"private.x", false, proto.CodeForbidden},
		{"_subsock.ctl", false, proto.CodeInvalidTopic},
	} {
		perr := Authorize(anon, tt.topic, tt.pub)
		if (perr == nil) != (tt.code == "") || (perr != nil && perr.Code != tt.code) {
			t.Errorf("Authorize(%q, pub %v) = %v, want %q", tt.topic, tt.pub, perr, tt.code)
		}
	}
	if Authorize(nil, "anything", true) != nil || !Reserved("_subsock.node.x") || Reserved("subsock.x") {
		t.Fatal("nil grants or reserved prefix")
	}
}

// Admission: past MaxConns a connection is refused with 503 and a retry
// hint until a slot is released.
func TestAdmitAndRelease(t *testing.T) {
	p, err := New(Config{MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if ref := p.Admit(now); ref != nil {
		t.Fatalf("first: %+v", ref)
	}
	ref := p.Admit(now)
	if ref == nil || ref.Status != http.StatusServiceUnavailable || ref.Header == "" {
		t.Fatalf("second: %+v, want 503 with Retry-After", ref)
	}
	p.Release()
	if ref := p.Admit(now); ref != nil {
		t.Fatalf("after release: %+v", ref)
	}
}

func TestPublishLimitAndHelpers(t *testing.T) {
	p, err := New(Config{PublishRate: 1, PublishBurst: 1})
	if err != nil {
		t.Fatal(err)
	}
	l := p.NewLimiter()
	if p.AllowPublish(l) != nil {
		t.Fatal("first publish refused")
	}
	if perr := p.AllowPublish(l); perr == nil || perr.Code != proto.CodeRateLimited {
		t.Fatalf("second publish: %v, want rate_limited", perr)
	}
	if !CloseRefusals("a=1&refuse=close") || CloseRefusals("refuse=status") || CloseRefusals("") {
		t.Fatal("CloseRefusals")
	}
	if len(TruncReason(string(make([]byte, 200)))) != 123 {
		t.Fatal("TruncReason")
	}
}
