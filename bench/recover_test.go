package bench

import (
	"encoding/json"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

func TestOffsetTracker(t *testing.T) {
	type ev struct {
		ack      bool
		off      uint64
		newEpoch bool     // msg
		rec      recovery // ack
	}
	msg := func(off uint64) ev { return ev{off: off} }
	ack := func(pos uint64, rec recovery) ev { return ev{ack: true, off: pos, rec: rec} }
	tests := []struct {
		name   string
		events []ev
		want   offsetTracker
	}{
		{"first ack sets the baseline", []ev{ack(57, recoveryNone), msg(58), msg(59)}, offsetTracker{last: 59, known: true}},
		{"a gap", []ev{ack(0, recoveryNone), msg(1), msg(4), msg(5)}, offsetTracker{last: 5, known: true, gaps: 2}},
		{"duplicates and one behind", []ev{ack(0, recoveryNone), msg(1), msg(2), msg(2), msg(1), msg(3)}, offsetTracker{last: 3, known: true, dups: 2}},
		{"replay then recovered ack at the top", []ev{ack(0, recoveryNone), msg(1), msg(2), msg(3), msg(4), ack(4, recoveryTrue), msg(5)},
			offsetTracker{last: 5, known: true}},
		{"recovered ack ahead of the replay: the tail is lost", []ev{ack(0, recoveryNone), msg(1), msg(2), ack(5, recoveryTrue), msg(6)},
			offsetTracker{last: 6, known: true, gaps: 3}},
		{"ack behind what is held: the repeats are dups", []ev{ack(0, recoveryNone), msg(1), msg(2), msg(3), ack(2, recoveryTrue), msg(3), msg(4)},
			offsetTracker{last: 4, known: true, dups: 1}},
		{"recovered:false skips to the position", []ev{ack(0, recoveryNone), msg(1), ack(9, recoveryFalse), msg(10)},
			offsetTracker{last: 10, known: true, notRecovered: 1, skipped: 8}},
		{"recovered:false in a new epoch restarts lower", []ev{ack(0, recoveryNone), msg(1), msg(2), msg(3), ack(1, recoveryFalse), msg(2)},
			offsetTracker{last: 2, known: true, notRecovered: 1}},
		{"a msg announcing a new epoch", []ev{ack(40, recoveryNone), msg(41), {off: 1, newEpoch: true}, msg(2)},
			offsetTracker{last: 2, known: true, epochResets: 1}},
		{"a msg before any ack", []ev{msg(7), msg(8), ack(8, recoveryNone)}, offsetTracker{last: 8, known: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tr offsetTracker
			for _, e := range tt.events {
				if e.ack {
					tr.ack(e.off, e.rec)
				} else {
					tr.msg(e.off, e.newEpoch)
				}
			}
			if tr != tt.want {
				t.Fatalf("tracker %+v, want %+v", tr, tt.want)
			}
		})
	}
}

func TestCutTimes(t *testing.T) {
	tests := []struct {
		every, d time.Duration
		want     []time.Duration
	}{
		{time.Second, 3 * time.Second, []time.Duration{500 * time.Millisecond, 1500 * time.Millisecond, 2500 * time.Millisecond}},
		{time.Second, 2500 * time.Millisecond, []time.Duration{500 * time.Millisecond, 1500 * time.Millisecond}},
		{2 * time.Second, time.Second, nil},
		{0, time.Second, nil},
	}
	for _, tt := range tests {
		if got := cutTimes(tt.every, tt.d); !slices.Equal(got, tt.want) {
			t.Errorf("cutTimes(%s, %s) = %v, want %v", tt.every, tt.d, got, tt.want)
		}
	}
	if n := len(cutTimes(time.Second, 30*time.Second)); n != 30 {
		t.Errorf("30 s at 1 s: %d rounds, want 30", n)
	}
}

func TestCutShares(t *testing.T) {
	tests := []struct {
		counts   []int
		fraction float64
		want     []int
	}{
		{[]int{5000, 5000}, 0.1, []int{500, 500}},
		{[]int{7, 7, 6}, 0.1, []int{1, 1, 0}},
		{[]int{100, 100, 1}, 0.05, []int{5, 5, 0}},
		{[]int{3, 3, 3}, 0.5, []int{2, 2, 1}},
		{[]int{10}, 1, []int{10}},
		{[]int{2, 1}, 1, []int{2, 1}},
		{[]int{100}, 0.001, []int{0}},
		{nil, 0.1, []int{}},
	}
	for _, tt := range tests {
		got := cutShares(tt.counts, tt.fraction)
		if !slices.Equal(got, tt.want) {
			t.Errorf("cutShares(%v, %g) = %v, want %v", tt.counts, tt.fraction, got, tt.want)
		}
		for i := range got {
			if got[i] > tt.counts[i] {
				t.Errorf("cutShares(%v, %g): worker %d cuts %d of %d", tt.counts, tt.fraction, i, got[i], tt.counts[i])
			}
		}
	}
}

func TestAppendSubSince(t *testing.T) {
	b := appendSubSince(nil, 9, "bench.0", 41, []byte("a1b2"))
	var req struct {
		Op     string   `json:"op"`
		ID     uint64   `json:"id"`
		Topics []string `json:"topics"`
		Since  map[string]struct {
			Offset uint64 `json:"offset"`
			Epoch  string `json:"epoch"`
		} `json:"since"`
	}
	if err := json.Unmarshal(b, &req); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	s, ok := req.Since["bench.0"]
	if req.Op != "sub" || req.ID != 9 || !slices.Equal(req.Topics, []string{"bench.0"}) || !ok || s.Offset != 41 || s.Epoch != "a1b2" {
		t.Fatalf("request %s parsed as %+v", b, req)
	}
}

func TestParseReplyHistory(t *testing.T) {
	tests := []struct {
		in   string
		want reply
	}{
		{`{"op":"msg","topic":"t","offset":42,"data":[1,2,0]}`,
			reply{kind: replyMsg, topic: []byte("t"), offset: 42, hasOffset: true, st: stamp{1, 2, 0}, hasStamp: true}},
		{`{"op":"msg","topic":"t","offset":1,"epoch":"k3v9","data":null}`,
			reply{kind: replyMsg, topic: []byte("t"), offset: 1, hasOffset: true, epoch: []byte("k3v9")}},
		{`{"op":"ack","id":1,"positions":{"chat.1":{"offset":57,"epoch":"a1b2"}}}`,
			reply{kind: replyAck, id: 1, hasID: true, hasPos: true, pos: position{offset: 57, epoch: []byte("a1b2")}}},
		{`{"op":"ack","id":2,"positions":{"c":{"recovered":true,"epoch":"e","offset":8,"later":[1]},"d":{"offset":1}}}`,
			reply{kind: replyAck, id: 2, hasID: true, hasPos: true, pos: position{offset: 8, epoch: []byte("e"), recovered: recoveryTrue}}},
		{`{"op":"ack","id":3,"positions":{"c":{"offset":9,"epoch":"z","recovered":false}}}`,
			reply{kind: replyAck, id: 3, hasID: true, hasPos: true, pos: position{offset: 9, epoch: []byte("z"), recovered: recoveryFalse}}},
		{`{"op":"ack","id":4,"positions":{}}`, reply{kind: replyAck, id: 4, hasID: true}},
		{`{"op":"err","id":5,"code":"unavailable","msg":"try \"again\""}`,
			reply{kind: replyErr, id: 5, hasID: true, code: []byte("unavailable"), text: []byte(`try \"again\"`)}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var r reply
			if err := parseReply([]byte(tt.in), &r); err != nil {
				t.Fatal(err)
			}
			w := tt.want
			if r.kind != w.kind || r.id != w.id || r.offset != w.offset || r.hasOffset != w.hasOffset ||
				string(r.epoch) != string(w.epoch) || r.hasPos != w.hasPos || r.pos.offset != w.pos.offset ||
				string(r.pos.epoch) != string(w.pos.epoch) || r.pos.recovered != w.pos.recovered ||
				string(r.text) != string(w.text) || r.hasStamp != w.hasStamp || r.st != w.st {
				t.Fatalf("got %+v, want %+v", r, w)
			}
		})
	}
	for _, in := range []string{
		`{"op":"msg","offset":-1}`, `{"op":"msg","offset":"1"}`, `{"positions":[]}`,
		`{"positions":{"t":{"recovered":1}}}`, `{"positions":{"t":{"offset":1}`, `{"positions":{"t" 1}}`,
	} {
		var r reply
		if err := parseReply([]byte(in), &r); err == nil {
			t.Errorf("parseReply(%s) accepted it", in)
		}
	}
}

// fakeNode accepts WebSocket upgrades on a loopback port; the test plays
// the node on each accepted connection.
func fakeNode(t *testing.T) (target string, accepted <-chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan net.Conn, 4)
	go func() {
		defer close(ch)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if _, err := ws.Upgrade(c); err != nil {
				c.Close()
				continue
			}
			ch <- c
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return "ws://" + ln.Addr().String() + "/ws", ch
}

// subRequest is a sub as the fake node reads it.
type subRequest struct {
	Op     string   `json:"op"`
	ID     uint64   `json:"id"`
	Topics []string `json:"topics"`
	Since  map[string]struct {
		Offset uint64 `json:"offset"`
		Epoch  string `json:"epoch"`
	} `json:"since"`
}

func readSub(t *testing.T, c net.Conn) subRequest {
	t.Helper()
	f := readClientFrame(t, c)
	var req subRequest
	if err := json.Unmarshal(f.Payload, &req); err != nil || req.Op != "sub" {
		t.Fatalf("want a sub, got %s: %v", f.Payload, err)
	}
	return req
}

func nextConn(t *testing.T, ch <-chan net.Conn) net.Conn {
	t.Helper()
	select {
	case c := <-ch:
		t.Cleanup(func() { c.Close() })
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("the client did not reconnect")
		return nil
	}
}

// histMsg is a msg at offset off carrying a bench stamp.
func histMsg(t *testing.T, off uint64) []byte {
	t.Helper()
	data := appendPayload(nil, stamp{sent: time.Now().UnixNano(), seq: off}, 20)
	return serverFrame(t, ws.OpText, []byte(`{"op":"msg","topic":"bench.0","offset":`+strconv.FormatUint(off, 10)+`,"data":`+string(data)+`}`))
}

func histAck(t *testing.T, id, off uint64, rec string) []byte {
	t.Helper()
	pos := `{"offset":` + strconv.FormatUint(off, 10) + `,"epoch":"e1"`
	if rec != "" {
		pos += `,"recovered":` + rec
	}
	return serverFrame(t, ws.OpText, []byte(`{"op":"ack","id":`+strconv.FormatUint(id, 10)+`,"positions":{"bench.0":`+pos+`}}}`))
}

func send(t *testing.T, c net.Conn, frames ...[]byte) {
	t.Helper()
	for _, f := range frames {
		if _, err := c.Write(f); err != nil {
			t.Fatal(err)
		}
	}
}

// waitStats polls the worker's counters until ok holds (the reader runs
// on its own goroutine) or 5 s pass.
func waitStats(t *testing.T, w *worker, ok func(*workerStats) bool) *workerStats {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := w.stats()
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats never got there: %+v %+v", st, st.Recover)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestConnRecover plays the node for one recover connection through three
// cuts: a clean recovery, a refused sub with since (sent again) whose ack
// leaves a gap and is followed by a duplicate, and a recovered:false.
func TestConnRecover(t *testing.T) {
	target, accepted := fakeNode(t)
	w := newWorker()
	w.serve(&command{Cmd: cmdInit, Spec: &workerSpec{
		LocalIP: "127.0.0.1", Targets: []string{target}, Count: 1, TopicsPerConn: 1, Topics: 1,
		TopicPrefix: "bench", Concurrency: 1, DialTimeout: 5 * time.Second, AckTimeout: 5 * time.Second, Recover: true,
	}})
	connected := make(chan *workerReply, 1)
	go func() { connected <- w.serve(&command{Cmd: cmdConnect}) }()
	c1 := nextConn(t, accepted)
	if req := readSub(t, c1); req.ID != 1 || req.Since != nil || !slices.Equal(req.Topics, []string{"bench.0"}) {
		t.Fatalf("first sub %+v", req)
	}
	send(t, c1, histAck(t, 1, 0, ""))
	if rep := <-connected; rep.Stats.Subscribed != 1 || rep.Stats.Failed != 0 {
		t.Fatalf("connect %+v", rep.Stats)
	}
	send(t, c1, histMsg(t, 1), histMsg(t, 2), histMsg(t, 3))
	waitStats(t, w, func(st *workerStats) bool { return st.Received == 3 })

	// Cut 1: 4 was published meanwhile; the node replays it, acks, goes live.
	if n := w.serve(&command{Cmd: cmdCut, Cut: 5, Offsets: []uint64{4}}).Cut; n != 1 {
		t.Fatalf("cut %d connections, want 1", n)
	}
	if n := w.cut(1, []uint64{4}); n != 0 {
		t.Fatal("a connection still recovering must not be cut again")
	}
	c2 := nextConn(t, accepted)
	req := readSub(t, c2)
	if s, ok := req.Since["bench.0"]; req.ID != 2 || !ok || s.Offset != 3 || s.Epoch != "e1" {
		t.Fatalf("sub after the cut %+v", req)
	}
	send(t, c2, histMsg(t, 4), histAck(t, 2, 4, "true"), histMsg(t, 5))
	st := waitStats(t, w, func(st *workerStats) bool { return st.Recover.CaughtUp == 1 && st.Received == 5 })
	if st.Gaps != 0 || st.Dups != 0 || st.Recover.Cuts != 1 || st.Recover.Reconnects != 1 || stepCount(st.ReceivedByStep, recoverReplayStep) != 1 {
		t.Fatalf("after a clean recovery: %+v %+v", st, st.Recover)
	}
	if n, short := w.behind([]uint64{5}); n != 0 || short != 0 {
		t.Fatalf("behind %d (%d offsets), want none", n, short)
	}

	// Cut 2: the node refuses the first sub with since; the client sends it
	// again and gets an ack ahead of what it holds (6 lost), then 6 again
	// (a duplicate) and 8 (7 lost).
	w.cut(1, []uint64{5})
	c3 := nextConn(t, accepted)
	req = readSub(t, c3)
	send(t, c3, serverFrame(t, ws.OpText, []byte(`{"op":"err","id":`+strconv.FormatUint(req.ID, 10)+`,"code":"unavailable","msg":"busy"}`)))
	again := readSub(t, c3)
	if s := again.Since["bench.0"]; again.ID != req.ID+1 || s.Offset != 5 {
		t.Fatalf("sub sent again %+v after %+v", again, req)
	}
	send(t, c3, histAck(t, again.ID, 6, "true"), histMsg(t, 6), histMsg(t, 8))
	st = waitStats(t, w, func(st *workerStats) bool { return st.Received == 7 })
	if st.Gaps != 2 || st.Dups != 1 || st.Recover.Refused != 1 || st.Recover.CaughtUp != 2 || st.Errors["err reply unavailable: busy"] != 1 {
		t.Fatalf("after a refused recovery: %+v %+v", st, st.Recover)
	}

	// Cut 3: the node cannot recover; the client skips to its position.
	w.cut(1, []uint64{8})
	c4 := nextConn(t, accepted)
	req = readSub(t, c4)
	send(t, c4, histAck(t, req.ID, 10, "false"))
	st = waitStats(t, w, func(st *workerStats) bool { return st.Recover.NotRecovered == 1 })
	if st.Recover.Skipped != 2 || st.Gaps != 2 || st.Recover.Cuts != 3 || st.Recover.Reconnects != 3 {
		t.Fatalf("after recovered:false: %+v %+v", st, st.Recover)
	}
	if n, short := w.behind([]uint64{12}); n != 1 || short != 2 {
		t.Fatalf("behind %d (%d offsets), want 1 (2)", n, short)
	}

	// Our close: a close frame, the echo, and the reader is gone.
	closed := make(chan *workerReply, 1)
	go func() { closed <- w.serve(&command{Cmd: cmdClose}) }()
	if f := readClientFrame(t, c4); f.Header.OpCode != ws.OpClose {
		t.Fatalf("want a close frame, got %v", f.Header.OpCode)
	}
	send(t, c4, serverFrame(t, ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, "")))
	if rep := <-closed; rep.Stats.Open != 0 {
		t.Fatalf("open after close: %d", rep.Stats.Open)
	}
	if w.cut(1, []uint64{10}) != 0 {
		t.Fatal("a closed connection must not be cut")
	}
}
