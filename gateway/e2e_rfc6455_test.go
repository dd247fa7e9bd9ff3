package gateway_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/subsock/subsock/gateway"
)

// TestE2EProtocolViolations sends what RFC 6455 forbids and expects the
// exact close code, then the end of the connection.
func TestE2EProtocolViolations(t *testing.T) {
	const maxMessage = 1024
	n := startNode(t, gateway.Config{MaxMessage: maxMessage})
	ping := []byte(`{"op":"ping","id":1}`)
	big := func(k int) []byte { return bytes.Repeat([]byte("a"), k) }
	f := frameBytes
	cases := []struct {
		name   string
		frames [][]byte
		code   int
	}{
		{"unmasked", [][]byte{f(clientFrame{op: opText, payload: ping, unmasked: true})}, 1002},
		{"unmasked_ping", [][]byte{f(clientFrame{op: opPing, payload: []byte("x"), unmasked: true})}, 1002},
		{"rsv1", [][]byte{f(clientFrame{op: opText, rsv: 4, payload: ping})}, 1002},
		{"rsv2", [][]byte{f(clientFrame{op: opText, rsv: 2, payload: ping})}, 1002},
		{"rsv3", [][]byte{f(clientFrame{op: opText, rsv: 1, payload: ping})}, 1002},
		{"rsv1_on_ping", [][]byte{f(clientFrame{op: opPing, rsv: 4})}, 1002},
		{"opcode_3", [][]byte{f(clientFrame{op: 0x3, payload: ping})}, 1002},
		{"opcode_7", [][]byte{f(clientFrame{op: 0x7})}, 1002},
		{"opcode_0xB", [][]byte{f(clientFrame{op: 0xB})}, 1002},
		{"opcode_0xF", [][]byte{f(clientFrame{op: 0xF, payload: []byte("x")})}, 1002},
		{"ping_126_bytes", [][]byte{frame(opPing, big(126))}, 1002},
		{"pong_126_bytes", [][]byte{frame(opPong, big(126))}, 1002},
		{"close_126_bytes", [][]byte{frame(opClose, closePayload(1000, string(big(124))))}, 1002},
		{"fragmented_ping", [][]byte{f(clientFrame{op: opPing, notFin: true, payload: []byte("a")}), frame(opCont, []byte("b"))}, 1002},
		{"fragmented_close", [][]byte{f(clientFrame{op: opClose, notFin: true, payload: closePayload(1000, "")})}, 1002},
		{"continuation_without_start", [][]byte{frame(opCont, ping)}, 1002},
		{"continuation_without_start_not_fin", [][]byte{f(clientFrame{op: opCont, notFin: true, payload: ping})}, 1002},
		{"text_inside_fragmented_text", [][]byte{f(clientFrame{op: opText, notFin: true, payload: ping[:5]}), frame(opText, ping[5:])}, 1002},
		{"binary_inside_fragmented_text", [][]byte{f(clientFrame{op: opText, notFin: true, payload: ping[:5]}), frame(opBinary, ping[5:])}, 1002},
		{"close_1_byte", [][]byte{frame(opClose, []byte{0x03})}, 1002},
		{"close_code_0", [][]byte{frame(opClose, closePayload(0, ""))}, 1002},
		{"close_code_999", [][]byte{frame(opClose, closePayload(999, ""))}, 1002},
		{"close_code_1004", [][]byte{frame(opClose, closePayload(1004, ""))}, 1002},
		{"close_code_1005", [][]byte{frame(opClose, closePayload(1005, ""))}, 1002},
		{"close_code_1006", [][]byte{frame(opClose, closePayload(1006, ""))}, 1002},
		{"close_code_1015", [][]byte{frame(opClose, closePayload(1015, ""))}, 1002},
		{"close_code_2999", [][]byte{frame(opClose, closePayload(2999, ""))}, 1002},
		{"close_code_5000", [][]byte{frame(opClose, closePayload(5000, "bye"))}, 1002},
		{"close_reason_not_utf8", [][]byte{frame(opClose, closePayload(1000, "\xff"))}, 1007},
		{"length_msb_set", [][]byte{f(clientFrame{op: opText, length: 1 << 63, lenSet: true})}, 1002},
		{"too_big_single_frame", [][]byte{frame(opText, big(maxMessage+1))}, 1009},
		{"too_big_declared", [][]byte{f(clientFrame{op: opBinary, length: 1 << 40, lenSet: true})}, 1009},
		{"too_big_over_fragments", [][]byte{
			f(clientFrame{op: opText, notFin: true, payload: big(maxMessage / 2)}),
			f(clientFrame{op: opCont, notFin: true, payload: big(maxMessage / 2)}),
			frame(opCont, big(1)),
		}, 1009},
		{"invalid_utf8", [][]byte{frame(opText, []byte("\xff\xfe"))}, 1007},
		{"invalid_utf8_surrogate", [][]byte{frame(opText, []byte(`{"op":"ping","x":"`+"\xed\xa0\x80"+`"}`))}, 1007},
		{"invalid_utf8_truncated_at_end", [][]byte{frame(opText, []byte("abc\xe2\x82"))}, 1007},
		{"invalid_utf8_over_fragments", [][]byte{
			f(clientFrame{op: opText, notFin: true, payload: []byte("\xe2\x82")}),
			frame(opCont, []byte("x")),
		}, 1007},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := dialRaw(t, n, "subsock.v1.json")
			r.write(t, bytes.Join(tt.frames, nil))
			r.expectClose(t, tt.code)
		})
	}
}

// TestE2EPingPong checks that a WebSocket ping is answered with a pong
// carrying the same payload.
func TestE2EPingPong(t *testing.T) {
	n := startNode(t, gateway.Config{})
	all := make([]byte, 125)
	for i := range all {
		all[i] = byte(i * 7)
	}
	for _, tt := range []struct {
		name    string
		payload []byte
	}{
		{"empty", nil},
		{"text", []byte("hello")},
		{"binary_125", all},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := dialRaw(t, n, "")
			r.write(t, frame(opPing, tt.payload))
			got := r.nextData(t)
			if got.op != opPong || !got.fin || !bytes.Equal(got.payload, tt.payload) {
				t.Fatalf("got opcode %#x fin=%v %q, want a pong with %q", got.op, got.fin, got.payload, tt.payload)
			}
		})
	}
}

// TestE2EFragmented sends fragmented messages, with control frames
// interleaved, over both codecs: the pongs echo each ping's payload in
// order and the reassembled request is answered.
func TestE2EFragmented(t *testing.T) {
	n := startNode(t, gateway.Config{})
	for _, c := range bothCodecs {
		t.Run(c.name, func(t *testing.T) {
			msg := c.encode(t, envelope{{"op", "ping"}, {"id", 77}, {"pad", strings.Repeat("é", 20)}})
			dataOp := opText
			if c.binary {
				dataOp = opBinary
			}
			for _, tt := range []struct {
				name  string
				cuts  []int // split points in msg
				pings []string
			}{
				{"two_parts", []int{len(msg) / 2}, []string{"p1"}},
				{"three_parts_two_pings", []int{len(msg) / 3, 2 * len(msg) / 3}, []string{"p1", "p2"}},
				{"empty_middle_fragment", []int{5, 5}, []string{"", "p2"}},
				// Cutting inside a two-byte character must not be taken for
				// invalid UTF-8: validity is a property of the whole message.
				{"cut_inside_a_character", []int{bytes.Index(msg, []byte("é")) + 1}, []string{"mid"}},
			} {
				t.Run(tt.name, func(t *testing.T) {
					r := dialRaw(t, n, c.offer)
					var out []byte
					prev := 0
					for i, cut := range tt.cuts {
						op := opCont
						if i == 0 {
							op = dataOp
						}
						out = append(out, frameBytes(clientFrame{op: op, notFin: true, payload: msg[prev:cut]})...)
						out = append(out, frame(opPing, []byte(tt.pings[i]))...)
						prev = cut
					}
					out = append(out, frame(opCont, msg[prev:])...)
					r.write(t, out)
					for _, p := range tt.pings {
						got := r.nextData(t)
						if got.op != opPong || string(got.payload) != p {
							t.Fatalf("got opcode %#x %q, want pong %q", got.op, got.payload, p)
						}
					}
					got := r.nextData(t)
					if got.op != dataOp || !got.fin {
						t.Fatalf("got opcode %#x fin=%v, want a final %#x frame", got.op, got.fin, dataOp)
					}
					rep, err := c.decodeReply(got.payload)
					if err != nil {
						t.Fatal(err)
					}
					if rep.op != "pong" || rep.id != 77 {
						t.Fatalf("reply %v, want pong 77", rep)
					}
				})
			}
		})
	}
}

// TestE2ECloseHandshake sends a close frame: the node answers with a close
// frame echoing the status, then closes the socket.
func TestE2ECloseHandshake(t *testing.T) {
	n := startNode(t, gateway.Config{})
	for _, tt := range []struct {
		name    string
		payload []byte
		want    int
	}{
		{"empty", nil, 1000},
		{"normal", closePayload(1000, "bye"), 1000},
		{"going_away", closePayload(1001, ""), 1001},
		{"application_3000", closePayload(3000, "app"), 3000},
		{"private_4999", closePayload(4999, "ünïcode reason"), 4999},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := dialRaw(t, n, "")
			r.write(t, frame(opClose, tt.payload))
			r.expectClose(t, tt.want)
		})
	}
	eventually(t, "every closed connection to leave the node", func() bool { return n.g.Stats().TCPConns == 0 })
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime(t testing.TB) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestE2EStalledInput leaves clients stalled in the middle of a frame (and
// one in the middle of an HTTP request): the process burns next to no CPU
// while they wait, others are served, and completing the input works.
func TestE2EStalledInput(t *testing.T) {
	// Room for a message long enough to need the 64-bit length.
	n := startNode(t, gateway.Config{MaxMessage: 128 << 10})
	hc := newHTTPClient(t)
	type staller struct {
		r     *rawConn
		whole []byte
		sent  int
		id    int
	}
	cuts := []struct {
		name string
		pad  int // payload padding, to reach the extended lengths
		cut  func(whole []byte) int
	}{
		{"one_byte", 0, func([]byte) int { return 1 }},
		{"half_the_mask_key", 0, func([]byte) int { return 4 }},
		{"half_the_payload", 0, func(w []byte) int { return 6 + (len(w)-6)/2 }},
		{"inside_the_16_bit_length", 300, func([]byte) int { return 3 }},
		{"inside_the_64_bit_length", 70000, func([]byte) int { return 6 }},
		{"last_byte_missing", 70000, func(w []byte) int { return len(w) - 1 }},
	}
	var stallers []*staller
	for i, c := range cuts {
		id := 10 + i
		s := &staller{r: dialRaw(t, n, ""), id: id}
		// A whole request first proves the connection is in WebSocket mode.
		s.r.write(t, frame(opText, []byte(fmt.Sprintf(`{"op":"ping","id":%d}`, id))))
		expectRawPong(t, s.r, id)
		s.whole = frame(opText, []byte(fmt.Sprintf(`{"op":"ping","id":%d,"pad":"%s"}`, id, strings.Repeat("p", c.pad))))
		s.sent = c.cut(s.whole)
		s.r.write(t, s.whole[:s.sent])
		stallers = append(stallers, s)
	}
	httpStall, err := net.DialTimeout("tcp", n.addr, waitFor)
	if err != nil {
		t.Fatal(err)
	}
	defer httpStall.Close()
	httpReq := "GET /healthz HTTP/1.1\r\nHost: " + n.addr + "\r\n\r\n"
	if _, err := io.WriteString(httpStall, httpReq[:20]); err != nil {
		t.Fatal(err)
	}

	// The resource check: nothing spins on the partial input.
	const window, budget = 2 * time.Second, 200 * time.Millisecond
	before := cpuTime(t)
	<-time.After(window)
	if used := cpuTime(t) - before; used > budget {
		t.Errorf("process used %v of CPU in %v with stalled clients; budget %v", used, window, budget)
	}

	// Others are still served.
	cl := dialWS(t, n, codecJSON)
	expectUsable(t, cl, "stall.other")
	if status, _ := get(t, hc, n, "/healthz"); status != http.StatusOK {
		t.Fatalf("GET /healthz while clients stall: %d", status)
	}

	// Completing the input works.
	for _, s := range stallers {
		s.r.write(t, s.whole[s.sent:])
		expectRawPong(t, s.r, s.id)
	}
	_ = httpStall.SetDeadline(time.Now().Add(waitFor))
	if _, err := io.WriteString(httpStall, httpReq[20:]); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(httpStall), nil)
	if err != nil {
		t.Fatalf("completed HTTP request: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("completed HTTP request: %d", resp.StatusCode)
	}
}

// expectRawPong reads a JSON pong reply with id from a raw connection.
func expectRawPong(t testing.TB, r *rawConn, id int) {
	t.Helper()
	expectRawReply(t, r, "pong", uint64(id))
}

// expectRawReply reads a JSON reply with op and id from a raw connection,
// skipping the server's pings.
func expectRawReply(t testing.TB, r *rawConn, op string, id uint64) {
	t.Helper()
	f := r.nextData(t)
	if f.op != opText {
		t.Fatalf("got opcode %#x %q, want a text reply", f.op, f.payload)
	}
	rep, err := codecJSON.decodeReply(f.payload)
	if err != nil {
		t.Fatal(err)
	}
	if rep.op != op || !rep.hasID || rep.id != id {
		t.Fatalf("reply %v, want %s %d", rep, op, id)
	}
}
