package bench

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"
)

// The SSE client (-transport sse). A connection sends one request,
// GET /sse?topics=…, naming every topic; the node answers 200 once they are
// live, so the response head is the subscription's ack. The body is
// HTTP/1.1 chunked, one event per message:
//
//	data: {"topic":"bench.0","data":[sent,seq,step,"pad"]}
//
// The reader undoes the chunked framing and cuts the events in the
// connection's own buffer (nextEvent), as the WebSocket reader cuts frames,
// and hands each event's data to the same parser and accounting as a
// WebSocket msg (conn.delivery), stamped with the time of the read that
// completed it. Heartbeat comments count as pings; "event: close" counts
// as a close by the node under the code a WebSocket would have got.

// sseStatusError is a stream the node refused with an HTTP status.
type sseStatusError int

func (e sseStatusError) Error() string {
	return "bench: SSE request refused: HTTP " + strconv.Itoa(int(e))
}

// errStreamEnd is the decoder's report of the body's last chunk.
var errStreamEnd = errors.New("bench: SSE stream ended")

// openStream dials c's target from the worker's source address and sends
// the stream's request; it returns once the 200 head is in, with whatever
// followed it buffered. start is when the dial began.
func (c *conn) openStream(topics []string, start time.Time) error {
	w := c.w
	sp := &w.spec
	u, err := url.Parse(sp.Targets[c.idx%len(sp.Targets)])
	if err != nil {
		return err
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(sp.LocalIP)}, Timeout: sp.DialTimeout}
	if c.nc, err = d.Dial("tcp", u.Host); err != nil {
		return err
	}
	c.buf = make([]byte, readBufSize)
	req := appendSSERequest(c.buf[:0], u.Host, topics)
	sent := time.Now()
	if err := c.nc.SetDeadline(sent.Add(sp.AckTimeout)); err != nil {
		return err
	}
	if _, err := c.nc.Write(req); err != nil {
		return err
	}
	if err := c.readHead(); err != nil {
		return err
	}
	now := time.Now()
	w.connectedAt(start, now)
	c.sse = &sseDecoder{}
	w.subscribed(c, now.Sub(sent))
	return c.nc.SetDeadline(time.Time{})
}

// appendSSERequest builds the GET that opens a stream of topics.
func appendSSERequest(dst []byte, host string, topics []string) []byte {
	dst = append(dst, "GET /sse?topics="...)
	for i, t := range topics {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendQueryEscaped(dst, t)
	}
	dst = append(dst, " HTTP/1.1\r\nHost: "...)
	dst = append(dst, host...)
	return append(dst, "\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"...)
}

// appendQueryEscaped percent-encodes every byte of s but the unreserved
// ones (RFC 3986 §2.3).
func appendQueryEscaped(dst []byte, s string) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		switch b := s[i]; {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9', b == '-', b == '.', b == '_', b == '~':
			dst = append(dst, b)
		default:
			dst = append(dst, '%', hex[b>>4], hex[b&15])
		}
	}
	return dst
}

// readHead reads the response head into c.buf and checks it; the bytes
// after it stay buffered at c.buf[c.r:c.n].
func (c *conn) readHead() error {
	c.r, c.n = 0, 0
	for {
		if end := bytes.Index(c.buf[:c.n], []byte("\r\n\r\n")); end >= 0 {
			c.r = end + 4
			return checkSSEHead(c.buf[:end+2])
		}
		if c.n == len(c.buf) {
			return fmt.Errorf("%w: SSE response head over %d bytes", ErrMalformed, len(c.buf))
		}
		m, err := c.nc.Read(c.buf[c.n:])
		c.n += m
		if m == 0 && err != nil {
			return err
		}
	}
}

// checkSSEHead accepts a head (status line and header lines, each ending
// in CRLF) of a 200 with a chunked text/event-stream body, and returns
// sseStatusError for another status.
func checkSSEHead(head []byte) error {
	line, rest, _ := bytes.Cut(head, []byte("\r\n"))
	proto, status, _ := bytes.Cut(line, []byte(" "))
	code, err := strconv.Atoi(string(status[:min(3, len(status))]))
	if !bytes.HasPrefix(proto, []byte("HTTP/1.")) || len(status) < 3 || err != nil {
		return fmt.Errorf("%w: SSE response begins %q, not a status line", ErrMalformed, head[:min(24, len(head))])
	}
	if code != 200 {
		return sseStatusError(code)
	}
	var chunked, eventStream bool
	for len(rest) > 0 {
		line, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		name, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Content-Type")):
			const ct = "text/event-stream"
			eventStream = len(value) >= len(ct) && bytes.EqualFold(value[:len(ct)], []byte(ct))
		}
	}
	if !chunked || !eventStream {
		return fmt.Errorf("%w: SSE response is not a chunked text/event-stream: %q", ErrMalformed, head)
	}
	return nil
}

// processSSE handles every whole event buffered, flushing the batch of
// latencies at the end. now is the receive time of the bytes.
func (c *conn) processSSE(now time.Time) error {
	nowNs := now.UnixNano()
	defer c.w.rec.flush(c.idx, nowNs, &c.b)
	for {
		ev, ok, err := c.nextEvent()
		if errors.Is(err, errStreamEnd) {
			if !c.sse.closed && !c.closeSent {
				c.w.noteServerClose(1005) // ended with no reason given
			}
			return errServerClose
		}
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		if err := c.event(&ev, now, nowNs); err != nil {
			return err
		}
		if c.b.full() {
			c.w.rec.flush(c.idx, nowNs, &c.b)
		}
	}
	if c.r == c.n && len(c.buf) > 4*readBufSize {
		// A large event has passed: give its buffer back.
		c.buf, c.r, c.n = make([]byte, readBufSize), 0, 0
	}
	return nil
}

// event handles one server event.
func (c *conn) event(ev *sseEvent, now time.Time, nowNs int64) error {
	if ev.comments > 0 {
		c.w.pings.Add(int64(ev.comments))
	}
	if !ev.hasData {
		return nil // not dispatched (the retry hint, a heartbeat)
	}
	switch string(ev.name) {
	case "", "message":
		var r reply
		if err := parseReply(ev.data, &r); err != nil {
			return err
		}
		c.delivery(&r, now, nowNs)
	case "join":
		c.w.presenceEvent(replyJoin, nowNs)
	case "leave":
		c.w.presenceEvent(replyLeave, nowNs)
	case "close":
		c.sse.closed = true
		if !c.closeSent {
			c.w.noteServerClose(sseCloseCode(ev.data))
		}
	default:
		c.w.noteError(fmt.Errorf("bench: SSE event %q", ev.name))
	}
	return nil
}

// sseCloseCode is the WebSocket close code the node sends for the reason
// an "event: close" gives, so both transports' closes count alike.
func sseCloseCode(reason []byte) int {
	switch string(reason) {
	case "slow consumer":
		return 1013
	case "server shutting down":
		return 1001
	}
	return 1005
}

// sseEvent is one event of a stream; name and data alias the read buffer.
type sseEvent struct {
	name     []byte // the event field; empty for the default, "message"
	data     []byte // the data lines, joined by '\n'
	hasData  bool   // a data line came: the event is dispatched
	comments int    // comment lines (the node's heartbeats)
}

// sseDecoder is an SSE reader's position in the chunked body. The reader's
// unconsumed bytes, c.buf[c.r:c.n], begin with ev bytes of the unfinished
// event, already without chunk framing; the bytes from c.r+raw on are still
// framed. Between c.r+ev and c.r+raw lie framing bytes already read (a
// chunk's size line and CRLF); they are squeezed out before the next read.
type sseDecoder struct {
	state   chunkState
	left    int  // data bytes of the current chunk not yet decoded
	ev      int  // decoded bytes of the unfinished event
	raw     int  // offset of the next framed byte, from c.r
	scanned int  // of ev, the complete lines already searched for the event's end
	closed  bool // an "event: close" came
	// join holds an event's data lines joined, when it has several (the
	// node sends one); reused.
	join []byte
}

// chunkState is where in the chunked framing (RFC 9112 §7.1) the next
// framed byte lies.
type chunkState uint8

const (
	chunkSize    chunkState = iota // a chunk-size line
	chunkData                      // a chunk's data
	chunkDataEnd                   // the CRLF after a chunk's data
	chunkTrailer                   // a trailer line after the last chunk
)

// maxChunkLine bounds a chunk-size or trailer line.
const maxChunkLine = 256

// nextEvent returns the next whole event buffered and consumes it; ok is
// false when more bytes are needed. The node sends each event as one
// chunk, so its bytes are decoded where they arrived and nothing moves;
// only the pieces of an event split over several chunks are moved down to
// join the first.
func (c *conn) nextEvent() (ev sseEvent, ok bool, err error) {
	d := c.sse
	for {
		if end, found := d.eventEnd(c.buf[c.r : c.r+d.ev]); found {
			ev = d.parseEvent(c.buf[c.r : c.r+end])
			c.r += end
			d.ev -= end
			d.raw -= end
			return ev, true, nil
		}
		if d.ev > maxClientFrame {
			return ev, false, fmt.Errorf("%w: SSE event over %d bytes", ErrMalformed, maxClientFrame)
		}
		more, err := d.dechunk(c)
		if err != nil {
			return ev, false, err
		}
		if !more {
			break
		}
	}
	// Squeeze out the framing read so far, so that what remains is
	// contiguous for fill to compact or grow.
	if d.ev == 0 {
		c.r += d.raw
	} else if d.raw > d.ev {
		c.n = c.r + d.ev + copy(c.buf[c.r+d.ev:], c.buf[c.r+d.raw:c.n])
	}
	d.raw = d.ev
	return ev, false, nil
}

// eventEnd returns the length of the event at the front of b, through the
// blank line that ends it, or found false when b holds no blank line yet.
// Lines end in LF or CRLF.
func (d *sseDecoder) eventEnd(b []byte) (end int, found bool) {
	for {
		i := bytes.IndexByte(b[d.scanned:], '\n')
		if i < 0 {
			return 0, false
		}
		start, lf := d.scanned, d.scanned+i
		d.scanned = lf + 1
		if lf == start || (lf == start+1 && b[start] == '\r') {
			d.scanned = 0
			return lf + 1, true
		}
	}
}

// dechunk decodes one step of the framing that follows the event's bytes
// and reports whether it made progress; errStreamEnd follows the last
// chunk's trailer.
func (d *sseDecoder) dechunk(c *conn) (more bool, err error) {
	raw := c.buf[c.r+d.raw : c.n]
	switch d.state {
	case chunkSize, chunkTrailer:
		i := bytes.IndexByte(raw, '\n')
		if i < 0 {
			if len(raw) > maxChunkLine {
				return false, fmt.Errorf("%w: chunk line over %d bytes", ErrMalformed, maxChunkLine)
			}
			return false, nil
		}
		line := bytes.TrimSuffix(raw[:i], []byte("\r"))
		d.raw += i + 1
		if d.state == chunkTrailer {
			if len(line) == 0 {
				return false, errStreamEnd
			}
			return true, nil
		}
		size, err := parseChunkSize(line)
		if err != nil {
			return false, err
		}
		if size == 0 {
			d.state = chunkTrailer
		} else {
			d.state, d.left = chunkData, size
		}
		return true, nil
	case chunkData:
		n := min(d.left, len(raw))
		if n == 0 {
			return false, nil
		}
		if d.ev == 0 {
			c.r += d.raw // no event begun: it begins here, in place
			d.raw = 0
		}
		if d.raw != d.ev {
			copy(c.buf[c.r+d.ev:], c.buf[c.r+d.raw:c.r+d.raw+n])
		}
		d.ev += n
		d.raw += n
		if d.left -= n; d.left == 0 {
			d.state = chunkDataEnd
		}
		return true, nil
	default: // chunkDataEnd
		switch {
		case len(raw) >= 2 && raw[0] == '\r' && raw[1] == '\n':
			d.raw += 2
			d.state = chunkSize
			return true, nil
		case len(raw) == 0 || (len(raw) == 1 && raw[0] == '\r'):
			return false, nil
		}
		return false, fmt.Errorf("%w: no CRLF after a chunk's data", ErrMalformed)
	}
}

// parseChunkSize reads a chunk-size line's hex size, ignoring extensions.
func parseChunkSize(line []byte) (int, error) {
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	line = bytes.TrimRight(line, " \t")
	if len(line) == 0 || len(line) > 8 {
		return 0, fmt.Errorf("%w: chunk size %q", ErrMalformed, line)
	}
	size := 0
	for _, b := range line {
		var v byte
		switch {
		case '0' <= b && b <= '9':
			v = b - '0'
		case 'a' <= b && b <= 'f':
			v = b - 'a' + 10
		case 'A' <= b && b <= 'F':
			v = b - 'A' + 10
		default:
			return 0, fmt.Errorf("%w: chunk size %q", ErrMalformed, line)
		}
		size = size<<4 | int(v)
	}
	return size, nil
}

// parseEvent reads the fields of one event, b, which ends with its blank
// line. The data aliases b unless the event has several data lines.
func (d *sseDecoder) parseEvent(b []byte) sseEvent {
	var ev sseEvent
	joined := false // ev.data is d.join
	for i := 0; i < len(b); {
		j := i + bytes.IndexByte(b[i:], '\n')
		line := bytes.TrimSuffix(b[i:j], []byte("\r"))
		i = j + 1
		if len(line) == 0 {
			continue
		}
		if line[0] == ':' {
			ev.comments++
			continue
		}
		name, value := line, line[len(line):]
		if k := bytes.IndexByte(line, ':'); k >= 0 {
			name, value = line[:k], line[k+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		switch string(name) {
		case "data":
			switch {
			case !ev.hasData:
				ev.data, ev.hasData = value, true
			case !joined:
				d.join = append(append(append(d.join[:0], ev.data...), '\n'), value...)
				ev.data, joined = d.join, true
			default:
				d.join = append(append(d.join, '\n'), value...)
				ev.data = d.join
			}
		case "event":
			ev.name = value
		}
	}
	return ev
}
