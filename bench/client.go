package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"

	"github.com/subsock/subsock/frame"
)

// conn is one light client connection, a WebSocket or (sse set) an SSE
// stream. Exactly one goroutine owns it at a time — the dialer while it
// subscribes, then its reader (loop) — and that goroutine performs every
// read and write, so no write lock is needed. Other
// goroutines may only set closing, order a cut and poke the read deadline,
// under ncMu, which the owner takes to replace nc after a cut.
type conn struct {
	w    *worker
	idx  int // global connection index
	ncMu sync.Mutex
	nc   net.Conn
	buf  []byte
	r    int // next unread byte
	n    int // end of valid bytes
	// topics (sorted ids), last (the highest sequence seen per topic) and
	// count (deliveries per topic) give the gaps when the connection ends:
	// publishes may overtake each other between concurrent publishers, so
	// only the final tally tells a missing sequence from a late one.
	topics []uint32
	last   []uint32
	count  []uint32
	// pendingAcks counts sub requests not yet acknowledged.
	pendingAcks int
	subFailed   bool
	subErr      error // why, when not a refusal
	subSent     time.Time
	closing     atomic.Bool
	closeSent   bool // our close frame is out; the next close is the echo
	b           batch
	// rc follows offsets and survives cuts (recover scenario only).
	rc *recoverState
	// sse decodes an SSE stream's body; nil on a WebSocket.
	sse *sseDecoder
}

// readBufSize is each connection's read buffer; a larger frame grows it
// for as long as needed.
const readBufSize = 2048

// errServerClose ends a reader when the server sent a close frame.
var errServerClose = errors.New("bench: server closed the connection")

// subscribe sends the connection's sub requests (at most maxTopicsPerSub
// topics each) and reads until each is acknowledged or refused.
func (c *conn) subscribe(topics []string, deadline time.Time) error {
	var req []byte
	for id := 1; len(topics) > 0; id++ {
		chunk := topics[:min(len(topics), maxTopicsPerSub)]
		topics = topics[len(chunk):]
		req = appendSubRequest(req[:0], uint64(id), chunk)
		c.pendingAcks++
		c.subSent = time.Now()
		if err := c.write(ws.OpText, req, deadline); err != nil {
			return err
		}
	}
	if err := c.nc.SetReadDeadline(deadline); err != nil {
		return err
	}
	for c.pendingAcks > 0 && !c.subFailed {
		if err := c.fill(); err != nil {
			return err
		}
		if err := c.process(time.Now()); err != nil {
			return err
		}
	}
	if c.subFailed {
		if c.subErr != nil {
			return c.subErr
		}
		return errSubRefused
	}
	return c.nc.SetReadDeadline(time.Time{})
}

// maxTopicsPerSub stays within the node's default -max-topics-per-request.
const maxTopicsPerSub = 256

var errSubRefused = errors.New("bench: subscription refused")

// appendSubRequest builds {"op":"sub","id":N,"topics":[...]}; topic names
// are checked by Params (printable ASCII, no quote or backslash).
func appendSubRequest(dst []byte, id uint64, topics []string) []byte {
	dst = append(dst, `{"op":"sub","id":`...)
	dst = strconv.AppendUint(dst, id, 10)
	dst = append(dst, `,"topics":[`...)
	for i, t := range topics {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '"')
		dst = append(dst, t...)
		dst = append(dst, '"')
	}
	return append(dst, "]}"...)
}

// loop reads until the connection ends. It runs on the connection's own
// goroutine and reports the end to the worker.
func (c *conn) loop() {
	defer c.w.connDone(c)
	for {
		err := c.fill()
		if err == nil {
			if c.sse != nil {
				err = c.processSSE(time.Now())
			} else {
				err = c.process(time.Now())
			}
		}
		if err == nil {
			continue
		}
		if c.rc != nil && !c.closing.Load() && c.rc.state.Load() == recCut {
			if err = c.reconnect(); err == nil {
				continue
			}
		}
		if c.closing.Load() && !c.closeSent && !errors.Is(err, errServerClose) {
			// Our own close (RFC 6455 §7.1.2): send 1000, then keep reading
			// until the node echoes it, so neither side is left with a reset.
			// An SSE client has nothing to send: it half-closes, and the
			// node ends the stream when it reads the FIN.
			c.closeSent = true
			if c.sendClose() == nil && c.nc.SetReadDeadline(time.Now().Add(closeWait)) == nil {
				continue
			}
		}
		if !errors.Is(err, errServerClose) && !c.closing.Load() {
			c.w.noteError(err)
		}
		_ = c.nc.Close()
		return
	}
}

// closeWait bounds the wait for the node's answer to our close frame.
const closeWait = 3 * time.Second

// sendClose starts our side of the close.
func (c *conn) sendClose() error {
	if c.sse == nil {
		return c.write(ws.OpClose, closePayload(1000), time.Now().Add(time.Second))
	}
	if tc, ok := c.nc.(*net.TCPConn); ok {
		return tc.CloseWrite()
	}
	return c.nc.Close()
}

func closePayload(code uint16) []byte {
	return binary.BigEndian.AppendUint16(nil, code)
}

// fill reads more bytes, compacting or growing the buffer first when it is
// full.
func (c *conn) fill() error {
	if c.r == c.n {
		c.r, c.n = 0, 0
	}
	if c.n == len(c.buf) {
		if c.r > 0 {
			c.n = copy(c.buf, c.buf[c.r:c.n])
			c.r = 0
		} else {
			c.buf = append(c.buf, make([]byte, len(c.buf))...)
		}
	}
	m, err := c.nc.Read(c.buf[c.n:])
	c.n += m
	if m > 0 {
		return nil
	}
	return err
}

// process handles every whole frame buffered, flushing the batch of
// latencies at the end. now is the receive time of the bytes.
func (c *conn) process(now time.Time) error {
	nowNs := now.UnixNano()
	defer c.w.rec.flush(c.idx, nowNs, &c.b)
	for c.r < c.n {
		h, payload, ok, err := c.nextFrame()
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		switch h.OpCode {
		case ws.OpText, ws.OpBinary:
			if !h.Fin {
				return fmt.Errorf("%w: fragmented server message", ErrMalformed)
			}
			if err := c.message(payload, now, nowNs); err != nil {
				return err
			}
		case ws.OpPing:
			c.w.pings.Add(1)
			if err := c.write(ws.OpPong, payload, now.Add(time.Second)); err != nil {
				return err
			}
		case ws.OpClose:
			code := 1005 // no status received (RFC 6455 §7.1.5)
			if len(payload) >= 2 {
				code = int(binary.BigEndian.Uint16(payload))
			}
			if !c.closeSent {
				// The node started the close: count it and echo it.
				c.w.noteServerClose(code)
				_ = c.write(ws.OpClose, payload[:min(2, len(payload))], now.Add(time.Second))
			}
			return errServerClose
		case ws.OpPong:
		default:
			return fmt.Errorf("%w: opcode %d", ErrMalformed, h.OpCode)
		}
		if c.b.full() {
			c.w.rec.flush(c.idx, nowNs, &c.b)
		}
	}
	if c.r == c.n && len(c.buf) > 4*readBufSize {
		// A large frame has passed: give its buffer back.
		c.buf, c.r, c.n = make([]byte, readBufSize), 0, 0
	}
	return nil
}

// maxClientFrame bounds a payload the clients accept; the node's own limit
// is 64 KiB by default.
const maxClientFrame = 16 << 20

// nextFrame returns the next whole frame buffered and consumes it. ok is
// false when more bytes are needed; room for the frame is then made. The
// clients cut frames out of a per-connection buffer rather than read them
// through a bufio.Reader (frame.ReadServerFrame): a worker holds 15,000
// connections, and the server coalesces many frames into one TCP write, so
// one Read usually carries several.
func (c *conn) nextFrame() (h ws.Header, payload []byte, ok bool, err error) {
	h, hn, err := frame.ParseHeader(c.buf[c.r:c.n])
	if err == nil {
		err = frame.CheckServerFrame(h, maxClientFrame)
	}
	switch {
	case err == nil:
	case errors.Is(err, frame.ErrShort):
		return h, nil, false, nil
	default:
		return h, nil, false, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	end := hn + int(h.Length)
	if c.n-c.r < end {
		c.reserve(end)
		return h, nil, false, nil
	}
	payload = c.buf[c.r+hn : c.r+end]
	c.r += end
	return h, payload, true, nil
}

// reserve makes room for a frame of need bytes starting at c.r.
func (c *conn) reserve(need int) {
	if len(c.buf)-c.r >= need {
		return
	}
	c.n = copy(c.buf, c.buf[c.r:c.n])
	c.r = 0
	if len(c.buf) < need {
		nb := make([]byte, need)
		copy(nb, c.buf[:c.n])
		c.buf = nb
	}
}

// message handles one server message.
func (c *conn) message(p []byte, now time.Time, nowNs int64) error {
	var r reply
	if err := parseReply(p, &r); err != nil {
		return err
	}
	switch r.kind {
	case replyMsg:
		c.delivery(&r, now, nowNs)
	case replyAck:
		if c.rc != nil && !c.recoverAck(&r, now) {
			return nil
		}
		if r.hasID && c.pendingAcks > 0 {
			if c.pendingAcks--; c.pendingAcks == 0 {
				c.w.subscribed(c, now.Sub(c.subSent))
			}
		}
	case replyJoin, replyLeave:
		c.w.presenceEvent(r.kind, nowNs)
	case replyErr:
		c.w.errReplies.Add(1)
		if c.rc != nil {
			// The node's reason is the evidence a recover run reports.
			c.w.noteError(fmt.Errorf("err reply %s: %s", r.code, r.text))
			if err := c.recoverRefused(&r); err != nil {
				return err
			}
		} else {
			c.w.noteError(fmt.Errorf("err reply %s", r.code))
		}
		if r.hasID && c.pendingAcks > 0 {
			c.subFailed = true
		}
	}
	return nil
}

// delivery accounts one message, however it came: a WebSocket msg or an
// SSE event's data, both {"topic":…,"data":[sent, seq, step, …]}. Its
// latency is nowNs, the time of the read that completed it, less the
// publish time it carries.
func (c *conn) delivery(r *reply, now time.Time, nowNs int64) {
	replay := false
	if c.rc != nil && r.hasOffset {
		replay = c.recoverMsg(r, now)
	}
	if !r.hasStamp {
		c.b.unstamped++
		return
	}
	step := r.st.step
	switch {
	case replay:
		step = recoverReplayStep
	case c.rc == nil && !c.w.spec.LateJoin:
		// Recover connections judge offsets instead: a replay repeats
		// sequence numbers by design.
		c.track(r.topic, r.st.seq)
	}
	c.b.samples[c.b.n] = sample{lat: time.Duration(nowNs - r.st.sent), step: step}
	c.b.n++
}

// track counts a delivery of seq on topic.
func (c *conn) track(topic []byte, seq uint64) {
	id, ok := topicID(topic)
	if !ok {
		return
	}
	slot, found := slices.BinarySearch(c.topics, id)
	if !found {
		return
	}
	c.count[slot]++
	c.last[slot] = max(c.last[slot], uint32(min(seq, 1<<32-1)))
}

// tally returns the sequence numbers missing below each topic's highest
// (gaps) and the deliveries beyond one per sequence (dups).
func (c *conn) tally() (gaps, dups int64) {
	for i, last := range c.last {
		switch n := c.count[i]; {
		case n < last:
			gaps += int64(last - n)
		case n > last:
			dups += int64(n - last)
		}
	}
	return gaps, dups
}

// topicID parses the number after the last dot of PREFIX.<n>.
func topicID(t []byte) (uint32, bool) {
	i := len(t)
	for i > 0 && t[i-1] != '.' {
		i--
	}
	v, end, ok := scanUint(t, i)
	if !ok || end != len(t) || v > 1<<32-1 {
		return 0, false
	}
	return uint32(v), true
}

// write sends one masked frame, bounded by deadline.
func (c *conn) write(op ws.OpCode, payload []byte, deadline time.Time) error {
	var stack [256]byte
	key := [4]byte{}
	binary.LittleEndian.PutUint32(key[:], rand.Uint32())
	f := frame.AppendMaskedFrame(stack[:0], op, payload, key)
	if err := c.nc.SetWriteDeadline(deadline); err != nil {
		return err
	}
	_, err := c.nc.Write(f)
	return err
}

// stop asks the reader to close the connection; it returns at once.
func (c *conn) stop() {
	c.ncMu.Lock()
	c.closing.Store(true)
	_ = c.nc.SetReadDeadline(time.Unix(1, 0))
	c.ncMu.Unlock()
}
