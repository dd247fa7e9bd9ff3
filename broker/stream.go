package broker

import (
	"bytes"
	"context"
	"math/rand/v2"
	"strconv"
	"time"
)

// History. A topic with history has a stream on the backbone: every
// publication gets the next offset of the topic (1, 2, ... with no gaps,
// assigned once for the whole cluster by the backbone) and is kept, at
// most StreamPolicy.Size of them, for StreamPolicy.TTL after the last
// publication. A stream has an epoch, a short string that changes whenever
// its past is lost (a memory node restarted, the stream was evicted or
// expired, Redis lost its data), so that a position (offset, epoch) names
// one publication for good.

// Position is a place in a topic's stream: the offset of its last
// publication (0 while it has none) and its epoch.
type Position struct {
	Offset uint64
	Epoch  string
}

// Publication is one message a stream holds.
type Publication struct {
	Offset  uint64
	Payload []byte
}

// StreamPolicy says how a topic's stream is kept. It is given with every
// call, and the last publish's policy is the one a stream keeps.
type StreamPolicy struct {
	Size int           // publications kept, at least 1 (below 1 counts as 1)
	TTL  time.Duration // how long the stream outlives its last publication; 0 or less: no expiry
}

// normalized is p with Size at least 1 and TTL not negative.
func (p StreamPolicy) normalized() StreamPolicy {
	p.Size = max(p.Size, 1)
	p.TTL = max(p.TTL, 0)
	return p
}

// StreamQuery says which publications ReadStream returns, oldest first.
// Limit applies after Since or Last: with Last 10 and Limit 3 the oldest 3
// of the last 10 come back, so a reader pages on with Since set to the
// last offset it got. A caller that asked from Since learns that the
// stream no longer holds what followed it when the first publication
// returned is above Since+1.
type StreamQuery struct {
	Since uint64 // the publications with an offset above Since ...
	Last  int    // ... or, when Last > 0, the last Last publications
	Limit int    // at most this many; 0 returns the position only
}

// Streamer is implemented by brokers that keep history: memory, Redis and
// Redis Cluster. NATS core does not.
//
// A Handler gets a stream's publications one at a time, in offset order.
// On Memory it runs under the stream's lock, on the publisher's
// goroutine: a Handler must not call PublishStream or ReadStream (of any
// node), or it may deadlock; Publish stays allowed.
type Streamer interface {
	// PublishStream gives payload the next offset of topic's stream,
	// appends it (the stream keeps p.Size publications, for p.TTL after the
	// last one) and publishes it to every subscribed node, as one atomic
	// step on the backbone, so that nodes receive a topic's publications in
	// offset order. Handlers receive it in stream form (see ParseStream).
	// It fails as Publish does, and payload is not retained.
	PublishStream(ctx context.Context, topic string, payload []byte, p StreamPolicy) (Position, error)
	// ReadStream returns the position of topic's stream and the
	// publications q asks for that it still holds, oldest first. A topic
	// without a stream gets an empty one (offset 0, a new epoch, kept for
	// p.TTL), so the position returned stays valid for the next publish.
	// The payloads returned are the caller's.
	ReadStream(ctx context.Context, topic string, q StreamQuery, p StreamPolicy) (Position, []Publication, error)
}

// StreamMark is the first byte of a payload in stream form. Handlers get
// a publication on a history topic as
//
//	StreamMark, decimal offset, ':', epoch, ':', payload
//
// which a backbone script can build. A payload published with Publish
// must not start with StreamMark (the gateway's start with a format byte).
const StreamMark = 0xFF

// AppendStream appends payload in stream form to dst.
func AppendStream(dst []byte, pos Position, payload []byte) []byte {
	dst = append(dst, StreamMark)
	dst = strconv.AppendUint(dst, pos.Offset, 10)
	dst = append(dst, ':')
	dst = append(dst, pos.Epoch...)
	dst = append(dst, ':')
	return append(dst, payload...)
}

// ParseStream splits a payload in stream form; ok is false when b is not
// one. epoch aliases b.
func ParseStream(b []byte) (offset uint64, epoch []byte, payload []byte, ok bool) {
	if len(b) == 0 || b[0] != StreamMark {
		return 0, nil, nil, false
	}
	rest := b[1:]
	i := bytes.IndexByte(rest, ':')
	if i <= 0 || i > 20 {
		return 0, nil, nil, false
	}
	for _, c := range rest[:i] {
		if c < '0' || c > '9' {
			return 0, nil, nil, false
		}
		d := uint64(c - '0')
		if offset > (1<<64-1-d)/10 {
			return 0, nil, nil, false
		}
		offset = offset*10 + d
	}
	rest = rest[i+1:]
	j := bytes.IndexByte(rest, ':')
	if j < 0 {
		return 0, nil, nil, false
	}
	return offset, rest[:j], rest[j+1:], true
}

// epochLen is the length of the epochs this package makes.
const epochLen = 8

// newEpoch returns a random epoch: 8 base-36 digits, about 41 bits, so
// that a stream that lost its past is all but sure to get an epoch it
// never had.
func newEpoch() string {
	const digits = "0123456789abcdefghijklmnopqrstuvwxyz"
	var b [epochLen]byte
	x := rand.Uint64()
	for i := range b {
		b[i] = digits[x%36]
		x /= 36
	}
	return string(b[:])
}
