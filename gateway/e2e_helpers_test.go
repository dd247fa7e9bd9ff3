package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/gobwas/ws"
	"github.com/vmihailenco/msgpack/v5"

	wsframe "github.com/subsock/subsock/frame"
	"github.com/subsock/subsock/gateway"
)

// waitFor bounds every wait on the node. It is generous because the suite
// runs under -race on a small machine shared with other builds; it is a
// deadline, never a sleep.
const waitFor = 10 * time.Second

// ---------------------------------------------------------------- node

// node is one in-process gateway listening on a loopback port.
type node struct {
	g        *gateway.Gateway
	addr     string
	served   chan struct{} // closed when Serve returned; serveErr is then set
	serveErr error

	once    sync.Once
	stopErr error
}

// startNode starts a gateway with cfg and shuts it down when the test ends.
func startNode(t testing.TB, cfg gateway.Config) *node {
	t.Helper()
	g, err := gateway.New(cfg)
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = g.Shutdown(context.Background())
		t.Fatalf("listen: %v", err)
	}
	n := &node{g: g, addr: ln.Addr().String(), served: make(chan struct{})}
	go func() {
		defer close(n.served)
		n.serveErr = g.Serve(ln)
	}()
	t.Cleanup(func() {
		if err := n.shutdown(); err != nil && !errors.Is(err, gateway.ErrShuttingDown) {
			t.Errorf("Shutdown: %v", err)
		}
		select {
		case <-n.served:
		case <-time.After(waitFor):
			t.Errorf("Serve did not return after Shutdown")
		}
	})
	return n
}

// shutdown stops the node once; later calls return the first result.
func (n *node) shutdown() error {
	n.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		n.stopErr = n.g.Shutdown(ctx)
	})
	return n.stopErr
}

func (n *node) httpURL(path string) string { return "http://" + n.addr + path }
func (n *node) wsURL() string              { return "ws://" + n.addr + "/ws" }

// eventually polls cond every few milliseconds until it holds or waitFor
// passes; what describes the condition for the failure message.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitFor, what)
		}
		<-tick.C
	}
}

// ---------------------------------------------------------------- codecs

// kv is one field of an envelope; envelopes are ordered so that both codecs
// put the fields on the wire in the same order (the id before a bad field
// can then be read back, as the protocol promises).
type kv struct {
	k string
	v any
}

type envelope []kv

// rawField is written into an envelope as is, to build malformed input.
type rawField []byte

// wireCodec is the client's view of one subprotocol, built on encoders
// the node does not use (encoding/json, vmihailenco/msgpack).
type wireCodec struct {
	name        string // test name
	offer       string // Sec-WebSocket-Protocol offered; "" offers none
	want        string // subprotocol the server must select
	binary      bool
	contentType string // for POST /publish
}

var (
	codecJSON    = wireCodec{name: "json", offer: "subsock.v1.json", want: "subsock.v1.json", contentType: "application/json"}
	codecDefault = wireCodec{name: "default", offer: "", want: "", contentType: "application/json"}
	codecMsgpack = wireCodec{name: "msgpack", offer: "subsock.v1.msgpack", want: "subsock.v1.msgpack", binary: true, contentType: "application/msgpack"}
	// allCodecs are the three ways a client can pick its codec.
	allCodecs = []wireCodec{codecJSON, codecDefault, codecMsgpack}
	// bothCodecs are the two encodings.
	bothCodecs = []wireCodec{codecJSON, codecMsgpack}
)

func (c wireCodec) msgType() websocket.MessageType {
	if c.binary {
		return websocket.MessageBinary
	}
	return websocket.MessageText
}

// encodeValue encodes one value in the codec's format.
func (c wireCodec) encodeValue(t testing.TB, v any) []byte {
	t.Helper()
	if c.binary {
		b, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatalf("msgpack.Marshal(%v): %v", v, err)
		}
		return b
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("json.Marshal(%v): %v", v, err)
	}
	return b
}

// encode builds an envelope, fields in order.
func (c wireCodec) encode(t testing.TB, env envelope) []byte {
	t.Helper()
	var buf bytes.Buffer
	if c.binary {
		// bytes.Buffer is an io.ByteWriter, so the encoder writes through
		// and raw fields can be interleaved.
		enc := msgpack.NewEncoder(&buf)
		if err := enc.EncodeMapLen(len(env)); err != nil {
			t.Fatal(err)
		}
		for _, f := range env {
			if err := enc.EncodeString(f.k); err != nil {
				t.Fatal(err)
			}
			if r, ok := f.v.(rawField); ok {
				buf.Write(r)
				continue
			}
			if err := enc.Encode(f.v); err != nil {
				t.Fatalf("msgpack encode %q: %v", f.k, err)
			}
		}
		return buf.Bytes()
	}
	buf.WriteByte('{')
	for i, f := range env {
		if i > 0 {
			buf.WriteByte(',')
		}
		k, _ := json.Marshal(f.k)
		buf.Write(k)
		buf.WriteByte(':')
		if r, ok := f.v.(rawField); ok {
			buf.Write(r)
			continue
		}
		v, err := json.Marshal(f.v)
		if err != nil {
			t.Fatalf("json encode %q: %v", f.k, err)
		}
		buf.Write(v)
	}
	buf.WriteByte('}')
	return buf.Bytes()
}

// reply is a decoded server envelope.
type reply struct {
	op      string
	id      uint64
	hasID   bool
	code    string
	msg     string
	topic   string
	data    any // normalised (see norm)
	hasData bool
	fields  map[string]any // every field, normalised: offset, epoch, positions
}

func (r reply) String() string {
	s := "{op:" + r.op
	if r.hasID {
		s += " id:" + strconv.FormatUint(r.id, 10)
	}
	if r.code != "" {
		s += " code:" + r.code + " msg:" + strconv.Quote(r.msg)
	}
	if r.topic != "" {
		s += " topic:" + r.topic
	}
	if r.hasData {
		s += fmt.Sprintf(" data:%v", r.data)
	}
	return s + "}"
}

// decodeReply decodes one server message in the codec's format.
func (c wireCodec) decodeReply(b []byte) (reply, error) {
	var m map[string]any
	if c.binary {
		if err := msgpack.Unmarshal(b, &m); err != nil {
			return reply{}, fmt.Errorf("msgpack reply %x: %w", b, err)
		}
	} else {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			return reply{}, fmt.Errorf("JSON reply %q: %w", b, err)
		}
		if dec.More() {
			return reply{}, fmt.Errorf("JSON reply %q: more than one value", b)
		}
	}
	var r reply
	var ok bool
	if r.op, ok = m["op"].(string); !ok {
		return r, fmt.Errorf("reply %q: op is %T, want a string", b, m["op"])
	}
	if v, present := m["id"]; present {
		id, isInt := norm(v).(int64)
		if !isInt || id < 0 {
			return r, fmt.Errorf("reply %q: id %v is not a non-negative integer", b, v)
		}
		r.id, r.hasID = uint64(id), true
	}
	for _, f := range []struct {
		k   string
		dst *string
	}{{"code", &r.code}, {"msg", &r.msg}, {"topic", &r.topic}} {
		if v, present := m[f.k]; present {
			if *f.dst, ok = v.(string); !ok {
				return r, fmt.Errorf("reply %q: %s is %T, want a string", b, f.k, v)
			}
		}
	}
	if v, present := m["data"]; present {
		r.data, r.hasData = norm(v), true
	}
	r.fields = make(map[string]any, len(m))
	for k, v := range m {
		if k == "data" {
			r.fields[k] = r.data // normalised once: data may be large
			continue
		}
		r.fields[k] = norm(v)
	}
	return r, nil
}

// norm maps a decoded value to one representation whichever decoder
// produced it: integers int64, other numbers float64, maps and slices
// recursively.
func norm(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	case int:
		return int64(x)
	case int8:
		return int64(x)
	case int16:
		return int64(x)
	case int32:
		return int64(x)
	case int64:
		return x
	case uint:
		return int64(x)
	case uint8:
		return int64(x)
	case uint16:
		return int64(x)
	case uint32:
		return int64(x)
	case uint64:
		if x > math.MaxInt64 {
			return float64(x)
		}
		return int64(x)
	case float32:
		return float64(x)
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = norm(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = norm(e)
		}
		return out
	}
	return v
}

// ---------------------------------------------------------------- coder/websocket client

// wsClient is a coder/websocket client with a reader goroutine, so it
// answers the server's pings while the test does other things.
type wsClient struct {
	t     testing.TB
	codec wireCodec
	conn  *websocket.Conn
	in    chan wsMsg
	done  chan struct{} // closed when the reader exits; err is then set
	err   error
	stop  context.CancelFunc
}

type wsMsg struct {
	typ  websocket.MessageType
	data []byte
}

// dialWS connects a client with codec c and starts its reader.
func dialWS(t testing.TB, n *node, c wireCodec) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	opts := &websocket.DialOptions{}
	if c.offer != "" {
		opts.Subprotocols = []string{c.offer}
	}
	conn, resp, err := websocket.Dial(ctx, n.wsURL(), opts)
	if err != nil {
		t.Fatalf("dial %s (%s): %v", n.wsURL(), c.name, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake status %d, want 101", resp.StatusCode)
	}
	if got := conn.Subprotocol(); got != c.want {
		t.Fatalf("negotiated subprotocol %q, want %q", got, c.want)
	}
	conn.SetReadLimit(1 << 20)
	rctx, stop := context.WithCancel(context.Background())
	cl := &wsClient{t: t, codec: c, conn: conn, in: make(chan wsMsg, 1024), done: make(chan struct{}), stop: stop}
	go cl.read(rctx)
	t.Cleanup(cl.close)
	return cl
}

func (c *wsClient) read(ctx context.Context) {
	defer close(c.done)
	for {
		typ, b, err := c.conn.Read(ctx)
		if err != nil {
			c.err = err
			return
		}
		select {
		case c.in <- wsMsg{typ, b}:
		case <-ctx.Done():
			c.err = ctx.Err()
			return
		}
	}
}

// close ends the connection and waits for the reader.
func (c *wsClient) close() {
	_ = c.conn.CloseNow()
	c.stop()
	<-c.done
}

// send writes one message in the client's frame type.
func (c *wsClient) send(t testing.TB, b []byte) {
	t.Helper()
	c.sendType(t, c.codec.msgType(), b)
}

func (c *wsClient) sendType(t testing.TB, typ websocket.MessageType, b []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := c.conn.Write(ctx, typ, b); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// sendEnv encodes and sends an envelope.
func (c *wsClient) sendEnv(t testing.TB, env envelope) {
	t.Helper()
	c.send(t, c.codec.encode(t, env))
}

// next returns the next server message, checking its frame type.
func (c *wsClient) next(t testing.TB) reply {
	t.Helper()
	select {
	case m := <-c.in:
		if m.typ != c.codec.msgType() {
			t.Fatalf("%s client got a %v frame %q, want %v", c.codec.name, m.typ, m.data, c.codec.msgType())
		}
		r, err := c.codec.decodeReply(m.data)
		if err != nil {
			t.Fatal(err)
		}
		return r
	case <-c.done:
		t.Fatalf("connection ended while waiting for a reply: %v", c.err)
	case <-time.After(waitFor):
		t.Fatalf("no reply within %v", waitFor)
	}
	panic("unreachable")
}

// closeStatus waits for the reader to end and returns the close code the
// server sent (-1 when the connection ended without a close frame).
func (c *wsClient) closeStatus(t testing.TB) websocket.StatusCode {
	t.Helper()
	select {
	case <-c.done:
		return websocket.CloseStatus(c.err)
	case <-time.After(waitFor):
		t.Fatalf("connection still open after %v", waitFor)
	}
	return 0
}

// expectAck sends env (which carries id) and waits for its ack.
func (c *wsClient) expectAck(t testing.TB, id uint64, env envelope) {
	t.Helper()
	c.sendEnv(t, env)
	r := c.next(t)
	if r.op != "ack" || !r.hasID || r.id != id {
		t.Fatalf("reply to %v: %v, want ack id %d", env, r, id)
	}
}

// subscribe subscribes with id and waits for the ack; from then on every
// message published on topics must reach the client.
func (c *wsClient) subscribe(t testing.TB, id uint64, topics ...string) {
	t.Helper()
	c.expectAck(t, id, envelope{{"op", "sub"}, {"id", id}, {"topics", topics}})
}

// ---------------------------------------------------------------- raw client

// rawConn is a hand-driven WebSocket client: it performs the handshake
// itself and writes frame bytes as given, for what no library will send.
type rawConn struct {
	nc net.Conn
	br *bufio.Reader
}

// handshake upgrades nc to WebSocket, offering subprotocol unless empty.
func handshake(nc net.Conn, host, subprotocol string) (*bufio.Reader, error) {
	var k [16]byte
	_, _ = rand.Read(k[:])
	key := base64.StdEncoding.EncodeToString(k[:])
	req := "GET /ws HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n"
	if subprotocol != "" {
		req += "Sec-WebSocket-Protocol: " + subprotocol + "\r\n"
	}
	req += "\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		return nil, err
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, fmt.Errorf("handshake response: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("handshake status %d (%q), want 101", resp.StatusCode, body)
	}
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if got, want := resp.Header.Get("Sec-WebSocket-Accept"), base64.StdEncoding.EncodeToString(sum[:]); got != want {
		return nil, fmt.Errorf("Sec-WebSocket-Accept %q, want %q", got, want)
	}
	if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != subprotocol {
		return nil, fmt.Errorf("Sec-WebSocket-Protocol %q, want %q", got, subprotocol)
	}
	return br, nil
}

// dialRaw connects and upgrades a raw client; it is closed with the test.
func dialRaw(t testing.TB, n *node, subprotocol string) *rawConn {
	t.Helper()
	return dialRawWith(t, n, subprotocol, &net.Dialer{Timeout: waitFor})
}

func dialRawWith(t testing.TB, n *node, subprotocol string, d *net.Dialer) *rawConn {
	t.Helper()
	nc, err := d.Dial("tcp", n.addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(waitFor))
	br, err := handshake(nc, n.addr, subprotocol)
	if err != nil {
		t.Fatal(err)
	}
	_ = nc.SetDeadline(time.Time{})
	return &rawConn{nc: nc, br: br}
}

// Opcodes as the tests write them: bytes, so a test can as well name the
// reserved ones a server must refuse.
const (
	opCont   = byte(ws.OpContinuation)
	opText   = byte(ws.OpText)
	opBinary = byte(ws.OpBinary)
	opClose  = byte(ws.OpClose)
	opPing   = byte(ws.OpPing)
	opPong   = byte(ws.OpPong)
)

// clientFrame describes a frame as a client puts it on the wire, valid or
// not.
type clientFrame struct {
	notFin   bool
	rsv      byte // the three RSV bits, 0–7
	op       byte
	payload  []byte
	unmasked bool
	length   uint64 // declared length when lenSet; the payload is sent as is
	lenSet   bool
}

// frameBytes encodes f (masked unless f.unmasked), RFC 6455 section 5.2.
// The header is written as given, so every field can be wrong on purpose.
func frameBytes(f clientFrame) []byte {
	h := ws.Header{Fin: !f.notFin, Rsv: f.rsv, OpCode: ws.OpCode(f.op), Masked: !f.unmasked, Length: int64(len(f.payload))}
	if f.lenSet {
		// 1<<63 becomes a negative Length, which AppendRawHeader writes
		// with the most significant bit set.
		h.Length = int64(f.length)
	}
	if h.Masked {
		h.Mask = maskKey()
	}
	out := wsframe.AppendRawHeader(nil, h)
	start := len(out)
	out = append(out, f.payload...)
	if h.Masked {
		ws.Cipher(out[start:], h.Mask, 0)
	}
	return out
}

// frame is a masked final frame.
func frame(op byte, payload []byte) []byte {
	return wsframe.AppendMaskedFrame(nil, ws.OpCode(op), payload, maskKey())
}

// maskKey returns a random key, never all zeros, so masking really changes
// the bytes.
func maskKey() (key [4]byte) {
	_, _ = rand.Read(key[:])
	key[0] |= 1
	return key
}

// closePayload is a close frame's payload: code then reason.
func closePayload(code uint16, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, code), reason...)
}

// serverFrame is one frame read from the node.
type serverFrame struct {
	fin     bool
	op      byte
	payload []byte
}

// maxServerFrame bounds a frame the tests accept from the node.
const maxServerFrame = 16 << 20

// readFrame reads one frame into a new payload. Server frames must be
// unmasked with no RSV bits; io.EOF means the node closed between frames.
func readFrame(br *bufio.Reader) (serverFrame, error) {
	h, p, err := wsframe.ReadServerFrame(br, nil, maxServerFrame)
	return serverFrame{fin: h.Fin, op: byte(h.OpCode), payload: p}, err
}

func (r *rawConn) write(t testing.TB, b []byte) {
	t.Helper()
	_ = r.nc.SetWriteDeadline(time.Now().Add(waitFor))
	if _, err := r.nc.Write(b); err != nil {
		t.Fatalf("raw write: %v", err)
	}
}

// next reads one frame within waitFor.
func (r *rawConn) next(t testing.TB) serverFrame {
	t.Helper()
	_ = r.nc.SetReadDeadline(time.Now().Add(waitFor))
	f, err := readFrame(r.br)
	if err != nil {
		t.Fatalf("raw read: %v", err)
	}
	return f
}

// nextData reads frames until a data or close frame, skipping the
// server's heartbeat pings.
func (r *rawConn) nextData(t testing.TB) serverFrame {
	t.Helper()
	for {
		f := r.next(t)
		if f.op != opPing {
			return f
		}
	}
}

// readClose reads frames, skipping pings, until a close frame, and returns
// its status code (1005 when it carries none) and reason. Any other frame
// fails the test.
func (r *rawConn) readClose(t testing.TB) (int, string) {
	t.Helper()
	f := r.nextData(t)
	if f.op != opClose {
		t.Fatalf("got opcode %#x %q, want a close frame", f.op, f.payload)
	}
	switch len(f.payload) {
	case 0:
		return 1005, ""
	case 1:
		t.Fatalf("server close frame with a 1-byte payload")
	}
	return int(binary.BigEndian.Uint16(f.payload)), string(f.payload[2:])
}

// expectEOF asserts that the server closed the connection cleanly.
func (r *rawConn) expectEOF(t testing.TB) {
	t.Helper()
	_ = r.nc.SetReadDeadline(time.Now().Add(waitFor))
	f, err := readFrame(r.br)
	if !errors.Is(err, io.EOF) {
		t.Fatalf("after the close frame: frame %#x %q, err %v; want EOF", f.op, f.payload, err)
	}
}

// expectClose asserts the next frame (pings aside) is a close with code,
// then EOF.
func (r *rawConn) expectClose(t testing.TB, code int) {
	t.Helper()
	got, reason := r.readClose(t)
	if got != code {
		t.Fatalf("close code %d (%q), want %d", got, reason, code)
	}
	r.expectEOF(t)
}

// ---------------------------------------------------------------- HTTP

// newHTTPClient returns a client whose idle connections go with the test.
func newHTTPClient(t testing.TB) *http.Client {
	t.Helper()
	tr := &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 4}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: waitFor}
}

// publish POSTs body to /publish?topic=topic and returns status and body.
func publish(t testing.TB, hc *http.Client, n *node, topic, contentType string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, n.httpURL("/publish?topic="+topic), bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("POST /publish: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST /publish body: %v", err)
	}
	return resp.StatusCode, string(b)
}

// publishOK publishes and returns the subscriber count the node reports.
func publishOK(t testing.TB, hc *http.Client, n *node, topic, contentType string, body []byte) int {
	t.Helper()
	status, resp := publish(t, hc, n, topic, contentType, body)
	if status != http.StatusOK {
		t.Fatalf("POST /publish?topic=%s: %d %q, want 200", topic, status, resp)
	}
	var out map[string]json.RawMessage
	if err := json.Unmarshal([]byte(resp), &out); err != nil {
		t.Fatalf("POST /publish answer %q: %v", resp, err)
	}
	var subs int
	if err := json.Unmarshal(out["subscribers"], &subs); err != nil || len(out) != 1 {
		t.Fatalf(`POST /publish answer %q, want {"subscribers":N}`, resp)
	}
	return subs
}

// get fetches path and returns status and body.
func get(t testing.TB, hc *http.Client, n *node, path string) (int, string) {
	t.Helper()
	resp, err := hc.Get(n.httpURL(path))
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s body: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

// metric returns the value of an unlabelled sample in a Prometheus text
// exposition, and whether it was there.
func metric(body, name string) (float64, bool) {
	for _, line := range strings.Split(body, "\n") {
		rest, ok := strings.CutPrefix(line, name+" ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		return v, err == nil
	}
	return 0, false
}

// scrape returns one metric's value from the node's /metrics.
func scrape(t testing.TB, hc *http.Client, n *node, name string) float64 {
	t.Helper()
	status, body := get(t, hc, n, "/metrics")
	if status != http.StatusOK {
		t.Fatalf("GET /metrics: %d", status)
	}
	v, ok := metric(body, name)
	if !ok {
		t.Fatalf("/metrics has no sample %s", name)
	}
	return v
}

// dialEach runs dial(i) for every i < n on a few workers (the race detector
// caps live goroutines) and returns what each call returned, stored even
// when it failed. It stops at the first error and returns it with what was
// opened so far, for the caller to close.
func dialEach[C any](n, workers int, dial func(i int) (C, error)) ([]C, error) {
	out := make([]C, n)
	next := make(chan int)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				c, err := dial(i)
				out[i] = c
				if err != nil {
					errs <- fmt.Errorf("connection %d: %w", i, err)
					return
				}
			}
		})
	}
	var err error
feed:
	for i := range n {
		select {
		case next <- i:
		case err = <-errs:
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	return out, err
}
