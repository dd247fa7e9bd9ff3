package kafka

import (
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/subsock/subsock/broker"
	"github.com/subsock/subsock/proto"
)

func TestRoute(t *testing.T) {
	hdr := func(kv ...string) []kgo.RecordHeader {
		var hs []kgo.RecordHeader
		for i := 0; i+1 < len(kv); i += 2 {
			hs = append(hs, kgo.RecordHeader{Key: kv[i], Value: []byte(kv[i+1])})
		}
		return hs
	}
	tests := []struct {
		name      string
		header    string
		template  string
		rec       kgo.Record
		wantTopic string
		wantFmt   proto.Format
		wantErr   error
	}{
		{"key", "", "", kgo.Record{Key: []byte("prices.eur")}, "prices.eur", proto.FormatJSON, nil},
		{"header wins over key", "", "", kgo.Record{Key: []byte("k"), Headers: hdr(DefaultTopicHeader, "alerts.1")}, "alerts.1", proto.FormatJSON, nil},
		{"header wins over template", "", "prices.{key}", kgo.Record{Key: []byte("k"), Headers: hdr(DefaultTopicHeader, "alerts.1")}, "alerts.1", proto.FormatJSON, nil},
		{"empty header falls through", "", "", kgo.Record{Key: []byte("k"), Headers: hdr(DefaultTopicHeader, "")}, "k", proto.FormatJSON, nil},
		{"custom header", "x-topic", "", kgo.Record{Key: []byte("k"), Headers: hdr(DefaultTopicHeader, "no", "x-topic", "yes")}, "yes", proto.FormatJSON, nil},
		{"template with key", "", "prices.{key}", kgo.Record{Key: []byte("eur")}, "prices.eur", proto.FormatJSON, nil},
		{"template with topic and partition", "", "{topic}.p{partition}", kgo.Record{Topic: "orders", Partition: 7}, "orders.p7", proto.FormatJSON, nil},
		{"template needs a key", "", "prices.{key}", kgo.Record{}, "", 0, ErrNoTopic},
		{"no key, no template", "", "", kgo.Record{}, "", 0, ErrNoTopic},
		{"msgpack", "", "", kgo.Record{Key: []byte("k"), Headers: hdr("content-type", "application/msgpack")}, "k", proto.FormatMsgpack, nil},
		{"content-type any case, parameters", "", "", kgo.Record{Key: []byte("k"), Headers: hdr("Content-Type", "Application/JSON; charset=utf-8")}, "k", proto.FormatJSON, nil},
		{"unsupported content-type", "", "", kgo.Record{Key: []byte("k"), Headers: hdr("content-type", "text/plain")}, "", 0, ErrContentType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl, err := parseTemplate(tt.template)
			if err != nil {
				t.Fatal(err)
			}
			h := tt.header
			if h == "" {
				h = DefaultTopicHeader
			}
			rt := router{header: h, tmpl: tmpl}
			topic, f, err := rt.route(&tt.rec)
			if !errors.Is(err, tt.wantErr) || topic != tt.wantTopic || (err == nil && f != tt.wantFmt) {
				t.Errorf("route = %q, %v, %v; want %q, %v, %v", topic, f, err, tt.wantTopic, tt.wantFmt, tt.wantErr)
			}
		})
	}
}

func TestParseTemplateErrors(t *testing.T) {
	for _, s := range []string{"prices.{key", "prices.{nope}", "{}", "a.{KEY}"} {
		if _, err := parseTemplate(s); !errors.Is(err, ErrBadTemplate) {
			t.Errorf("parseTemplate(%q) = %v, want ErrBadTemplate", s, err)
		}
	}
}

// FuzzParseTemplate: a template parses or fails with ErrBadTemplate, and a
// parsed one expands without panicking to its literals and fields.
func FuzzParseTemplate(f *testing.F) {
	for _, s := range []string{"", "prices.{key}", "{topic}.{partition}.{key}", "a{", "}{", "{{key}}", "x.{nope}"} {
		f.Add(s, []byte("k"))
	}
	f.Fuzz(func(t *testing.T, s string, key []byte) {
		tmpl, err := parseTemplate(s)
		if err != nil {
			if !errors.Is(err, ErrBadTemplate) {
				t.Fatalf("error %v is not ErrBadTemplate", err)
			}
			return
		}
		if tmpl == nil {
			if s != "" {
				t.Fatalf("nil template for %q", s)
			}
			return
		}
		_ = tmpl.expand(&kgo.Record{Key: key, Topic: "t", Partition: 1})
	})
}

func TestReasonOf(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{ErrNoTopic, reasonNoTopic},
		{ErrContentType, reasonContentType},
		{ErrTooLarge, reasonTooLarge},
		{broker.ErrBadTopic, reasonBadTopic},
		{&proto.Error{Code: proto.CodeInvalidTopic, Msg: "x"}, reasonBadTopic},
		{&proto.Error{Code: proto.CodeBadRequest, Msg: "x"}, reasonBadData},
	}
	for _, tt := range tests {
		if got := reasonOf(tt.err); got != tt.want {
			t.Errorf("reasonOf(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
	if refused(broker.ErrUnavailable) || refused(errors.New("other")) {
		t.Error("an unavailable backbone or an unknown error counts as a refusal: records would be skipped")
	}
	if !refused(&proto.Error{Code: proto.CodeBadRequest}) {
		t.Error("a *proto.Error is not a refusal")
	}
}

func TestBackoff(t *testing.T) {
	min, max := 50*time.Millisecond, 2*time.Second
	want := []time.Duration{50, 100, 200, 400, 800, 1600, 2000, 2000}
	for i, w := range want {
		if got := backoff(min, max, i); got != w*time.Millisecond {
			t.Errorf("backoff(%d) = %v, want %v", i, got, w*time.Millisecond)
		}
	}
	if got := backoff(min, max, 1000); got != max {
		t.Errorf("backoff(1000) = %v", got)
	}
}
