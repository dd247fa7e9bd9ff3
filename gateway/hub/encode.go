package hub

import (
	"strconv"

	"github.com/gobwas/ws"

	"github.com/subsock/subsock/frame"
	"github.com/subsock/subsock/proto"
)

// Encode once: a message is built once per wire in use into ready bytes (a
// WebSocket frame per codec, an HTTP chunk for SSE), and the same bytes are
// queued on every subscriber of that wire.

// Codecs are the WebSocket wires, indexed by Member.Wire.
var Codecs = [2]proto.Codec{proto.JSON, proto.Msgpack}

// The wires a member may take: a codec's index, or WireSSE for an SSE
// stream (a third encoding beside the codecs' frames).
const (
	WireJSON    = uint8(0)
	WireMsgpack = uint8(1)
	WireSSE     = uint8(len(Codecs))
	// NWires is how many message encodings a delivery may build.
	NWires = len(Codecs) + 1
)

// BuildFor returns the ready bytes of a message for wire w: a codec's
// WebSocket frame, or an SSE chunk.
func BuildFor(w uint8, topic string, f proto.Format, data []byte) ([]byte, error) {
	if w == WireSSE {
		return BuildSSE(topic, 0, "", false, false, f, data)
	}
	return BuildMessage(Codecs[w], topic, f, data)
}

// BuildStreamFor is BuildFor for a publication of a history topic; lost
// says the stream's epoch changed since the connection's position.
func BuildStreamFor(w uint8, topic string, offset uint64, epoch string, lost bool, f proto.Format, data []byte) ([]byte, error) {
	if w == WireSSE {
		return BuildSSE(topic, offset, epoch, true, lost, f, data)
	}
	if !lost {
		epoch = ""
	}
	return BuildStreamMessage(Codecs[w], topic, offset, epoch, f, data)
}

// WireName names wire w for logs.
func WireName(w uint8) string {
	if w == WireSSE {
		return "sse"
	}
	return Codecs[w].Name()
}

// BuildMessage returns a ready frame carrying the message in c's format.
func BuildMessage(c proto.Codec, topic string, f proto.Format, data []byte) ([]byte, error) {
	data, err := proto.Convert(data, f, c.Format())
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, frame.MaxHeaderSize+len(topic)+len(data)+32)
	b = c.AppendMessage(frame.Reserve(b), topic, data)
	op := ws.OpText
	if c.Binary() {
		op = ws.OpBinary
	}
	return frame.Seal(b, op), nil
}

// BuildStreamMessage returns a ready frame carrying one publication of a
// history topic in c's format; epoch is set only when it changed.
func BuildStreamMessage(c proto.Codec, topic string, offset uint64, epoch string, f proto.Format, data []byte) ([]byte, error) {
	data, err := proto.Convert(data, f, c.Format())
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, frame.MaxHeaderSize+len(topic)+len(epoch)+len(data)+64)
	b = c.AppendStreamMessage(frame.Reserve(b), topic, offset, epoch, data)
	op := ws.OpText
	if c.Binary() {
		op = ws.OpBinary
	}
	return frame.Seal(b, op), nil
}

// SSEChunk frames one piece of the stream as an HTTP/1.1 chunk.
func SSEChunk(p []byte) []byte {
	b := strconv.AppendInt(make([]byte, 0, len(p)+12), int64(len(p)), 16)
	b = append(b, '\r', '\n')
	b = append(b, p...)
	return append(b, '\r', '\n')
}

// BuildSSE returns one message as a ready chunk: its event (with an id on
// a history topic), preceded by a "lost" event when lost is set (the
// stream's epoch changed since the connection's position).
func BuildSSE(topic string, offset uint64, epoch string, history, lost bool, f proto.Format, data []byte) ([]byte, error) {
	data, err := proto.Convert(data, f, proto.FormatJSON)
	if err != nil {
		return nil, err
	}
	b := make([]byte, chunkRoom, chunkRoom+len(topic)*2+len(epoch)*2+len(data)+128)
	if lost {
		b = AppendLost(b, topic, offset-1, epoch)
	}
	if history {
		b = append(b, "id: "...)
		b = append(b, epoch...)
		b = append(b, ':')
		b = strconv.AppendUint(b, offset, 10)
		b = append(b, '\n')
	}
	b = append(b, `data: {"topic":`...)
	b = strconv.AppendQuote(b, topic) // printable ASCII: the same as JSON
	if history {
		b = append(b, `,"offset":`...)
		b = strconv.AppendUint(b, offset, 10)
	}
	b = append(b, `,"data":`...)
	if len(data) == 0 {
		b = append(b, "null"...)
	} else {
		for _, c := range data {
			// CR and LF can only be whitespace between JSON tokens, and
			// would end the data line.
			if c == '\n' || c == '\r' {
				c = ' '
			}
			b = append(b, c)
		}
	}
	b = append(b, "}\n\n"...)
	return sealChunk(b), nil
}

// AppendLost appends the event telling a page that a topic's past is
// gone: it continues from the position given.
func AppendLost(b []byte, topic string, offset uint64, epoch string) []byte {
	b = append(b, `event: lost`+"\n"+`data: {"topic":`...)
	b = strconv.AppendQuote(b, topic)
	b = append(b, `,"offset":`...)
	b = strconv.AppendUint(b, offset, 10)
	b = append(b, `,"epoch":`...)
	b = strconv.AppendQuote(b, epoch)
	return append(b, "}\n\n"...)
}

// sealChunk writes the chunk-size line into the room reserved at the front
// of b and the CRLF after it, and returns the chunk.
func sealChunk(b []byte) []byte {
	n := len(b) - chunkRoom
	var hex [16]byte
	h := strconv.AppendInt(hex[:0], int64(n), 16)
	start := chunkRoom - len(h) - 2
	copy(b[start:], h)
	b[chunkRoom-2], b[chunkRoom-1] = '\r', '\n'
	return append(b[start:], '\r', '\n')
}

// chunkRoom is what appendSSEEvent reserves in front of an event for its
// chunk-size line: 8 hex digits and CRLF cover any -max-message.
const chunkRoom = 10
