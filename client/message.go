package client

import (
	"encoding/json"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/subsock/subsock/proto"
)

// Handler receives the messages of one subscribed topic. All handlers of a
// Conn run on its handler goroutine, one at a time.
type Handler func(m Message)

// Message is one delivery.
type Message struct {
	Topic string
	// Data is the value exactly as it arrived: JSON text on a JSON
	// connection, MessagePack bytes on a MessagePack one. The handler owns
	// it.
	Data []byte
	// Offset is the message's place in its topic's stream (1, 2, ...) on
	// a topic the node keeps history for; 0 on other topics.
	Offset uint64
	format proto.Format
}

// Decode unmarshals Data into v with the connection's codec
// (encoding/json or vmihailenco/msgpack).
func (m Message) Decode(v any) error {
	switch m.format {
	case proto.FormatMsgpack:
		return msgpack.Unmarshal(m.Data, v)
	default:
		return json.Unmarshal(m.Data, v)
	}
}

// Raw is a value already encoded in the connection's format (JSON text or
// MessagePack bytes); Publish sends it as is.
type Raw []byte

// encodeValue turns a Publish argument into data in format f.
func encodeValue(v any, f proto.Format) ([]byte, error) {
	if r, ok := v.(Raw); ok {
		return r, nil
	}
	var (
		b   []byte
		err error
	)
	if f == proto.FormatMsgpack {
		b, err = msgpack.Marshal(v)
	} else {
		b, err = json.Marshal(v)
	}
	if err != nil {
		return nil, fmt.Errorf("client: encoding %T as %v: %w", v, f, err)
	}
	return b, nil
}
