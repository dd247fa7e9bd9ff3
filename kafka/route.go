package kafka

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/subsock/subsock/proto"
)

// The header that says how a record's value is encoded.
const contentTypeHeader = "content-type"

// placeholder is one {name} of a topic template.
type placeholder uint8

const (
	literal placeholder = iota
	phKey
	phTopic
	phPartition
)

type part struct {
	ph  placeholder
	lit string
}

// template is a parsed TopicTemplate.
type template struct {
	parts   []part
	needKey bool
}

// parseTemplate splits s into literals and placeholders; an unknown or
// unclosed placeholder is ErrBadTemplate. An empty s is a nil template.
func parseTemplate(s string) (*template, error) {
	if s == "" {
		return nil, nil
	}
	t := &template{}
	for s != "" {
		i := strings.IndexByte(s, '{')
		if i < 0 {
			t.parts = append(t.parts, part{lit: s})
			break
		}
		if i > 0 {
			t.parts = append(t.parts, part{lit: s[:i]})
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return nil, fmt.Errorf("%w: unclosed { in %q", ErrBadTemplate, s)
		}
		switch name := s[i+1 : i+j]; name {
		case "key":
			t.parts = append(t.parts, part{ph: phKey})
			t.needKey = true
		case "topic":
			t.parts = append(t.parts, part{ph: phTopic})
		case "partition":
			t.parts = append(t.parts, part{ph: phPartition})
		default:
			return nil, fmt.Errorf("%w: unknown placeholder {%s} (want {key}, {topic} or {partition})", ErrBadTemplate, name)
		}
		s = s[i+j+1:]
	}
	return t, nil
}

func (t *template) expand(r *kgo.Record) string {
	var b strings.Builder
	for _, p := range t.parts {
		switch p.ph {
		case literal:
			b.WriteString(p.lit)
		case phKey:
			b.Write(r.Key)
		case phTopic:
			b.WriteString(r.Topic)
		case phPartition:
			b.WriteString(strconv.Itoa(int(r.Partition)))
		}
	}
	return b.String()
}

// router maps a record to its subsock topic and the format of its value.
// It only reads the record; the topic and data are validated where they
// are published (Gateway.Publish validates as POST /publish does).
type router struct {
	header string
	tmpl   *template
}

// route: the TopicHeader if the record has one (non-empty), else the
// template, else the key.
func (rt *router) route(r *kgo.Record) (topic string, f proto.Format, err error) {
	f = proto.FormatJSON
	for i := range r.Headers {
		h := &r.Headers[i]
		switch {
		case topic == "" && h.Key == rt.header:
			topic = string(h.Value)
		case strings.EqualFold(h.Key, contentTypeHeader):
			if f, err = formatOf(string(h.Value)); err != nil {
				return "", 0, err
			}
		}
	}
	if topic != "" {
		return topic, f, nil
	}
	switch {
	case rt.tmpl != nil && (!rt.tmpl.needKey || len(r.Key) > 0):
		return rt.tmpl.expand(r), f, nil
	case rt.tmpl == nil && len(r.Key) > 0:
		return string(r.Key), f, nil
	}
	return "", 0, ErrNoTopic
}

// formatOf reads a content-type: JSON (also when absent) or MessagePack;
// parameters such as charset are ignored.
func formatOf(ct string) (proto.Format, error) {
	mt, _, _ := strings.Cut(ct, ";")
	switch strings.ToLower(strings.TrimSpace(mt)) {
	case "", "application/json":
		return proto.FormatJSON, nil
	case "application/msgpack", "application/x-msgpack", "application/vnd.msgpack":
		return proto.FormatMsgpack, nil
	}
	return 0, fmt.Errorf("%w: %q", ErrContentType, ct)
}
