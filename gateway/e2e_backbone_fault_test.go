package gateway_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/subsock/subsock/gateway"
	"github.com/subsock/subsock/internal/testserver"
)

// Phases of the fault test; each publish is tagged with the one it began in.
const (
	phaseSteady     = iota // before the first fault, and between the two
	phaseKilled            // from kill -9 until the restarted server is back
	phasePaused            // from SIGSTOP until SIGCONT
	phaseRecovering        // after SIGCONT, until /healthz is ok again
	numPhases
)

var phaseNames = [numPhases]string{"steady", "killed", "paused", "recovering"}

// TestBackboneFaultsNoAcceptedLoss is issue 9's "no 200 but lost": one node
// on a real Redis, one subscriber, 100 publishes a second throughout a kill
// -9 and restart of Redis and a 10 s SIGSTOP of it. Every publish answered
// 200 must reach the subscriber, some must be refused with 503 during the
// faults, and none may wait longer than -publish-timeout + 100 ms.
func TestBackboneFaultsNoAcceptedLoss(t *testing.T) {
	const (
		topic          = "fault.t"
		publishTimeout = 2 * time.Second // the default, stated for the bound below
		answerBound    = publishTimeout + 100*time.Millisecond
		pauseFor       = 10 * time.Second
	)
	srv := testserver.Redis(t)
	n := startNode(t, gateway.Config{Broker: srv.URL})
	hc := newHTTPClient(t)

	sub := dialWS(t, n, codecJSON)
	sub.subscribe(t, 1, topic)
	got := collectSeqs(t, sub, topic)

	p := startPublisher(t, n, topic, 10*time.Millisecond)

	// flowing waits until steadyRun publishes issued from now on were
	// answered 200 and delivered: the node is back to normal, and each
	// fault begins with publishes under way.
	const steadyRun = 50
	flowing := func(what string) {
		t.Helper()
		from := p.issued()
		eventually(t, what, func() bool {
			k := 0
			for _, r := range p.results() {
				if r.seq > from && r.status == http.StatusOK && got.has(r.seq) {
					k++
				}
			}
			return k >= steadyRun
		})
	}
	healthy := func(what string) {
		t.Helper()
		eventually(t, what, func() bool {
			status, _ := get(t, hc, n, "/healthz")
			return status == http.StatusOK
		})
	}
	refused := func(phase int) {
		t.Helper()
		eventually(t, "a publish refused with 503 ("+phaseNames[phase]+")", func() bool {
			return p.count(phase, http.StatusServiceUnavailable) > 0
		})
	}
	flowing("the first delivery")

	// Phase 1: a crash. The restarted server knows nothing of the node's
	// subscriptions; the node must refuse publishes until it has
	// resubscribed.
	p.phase.Store(phaseKilled)
	srv.Kill()
	refused(phaseKilled)
	srv.Start()
	healthy("/healthz ok after the restart")
	p.phase.Store(phaseSteady)
	flowing("delivery after the restart")

	// Phase 2: a hang. Connections stay open and nothing is answered.
	p.phase.Store(phasePaused)
	srv.Pause()
	pausedAt := time.Now()
	refused(phasePaused)
	// The fault is a span of time, not an event the test could await.
	time.Sleep(time.Until(pausedAt.Add(pauseFor)))
	srv.Resume()
	p.phase.Store(phaseRecovering)
	healthy("/healthz ok after SIGCONT")
	p.phase.Store(phaseSteady)
	flowing("delivery after SIGCONT")

	p.stop()

	// Deliveries of the last accepted publishes may still be on their way.
	results := p.results()
	var accepted []int
	for _, r := range results {
		if r.status == http.StatusOK {
			accepted = append(accepted, r.seq)
		}
	}
	lost := got.waitAll(accepted, waitFor)

	var counts [numPhases]map[int]int
	var transportErrs []string
	var maxDur time.Duration
	maxSeq := 0
	for _, r := range results {
		if counts[r.phase] == nil {
			counts[r.phase] = map[int]int{}
		}
		counts[r.phase][r.status]++
		if r.err != "" {
			transportErrs = append(transportErrs, fmt.Sprintf("seq %d: %s", r.seq, r.err))
		}
		if r.dur > maxDur {
			maxDur, maxSeq = r.dur, r.seq
		}
	}
	for ph, c := range counts {
		t.Logf("%-10s answers by status: %v", phaseNames[ph], c)
	}
	total200, total503 := 0, 0
	for _, c := range counts {
		total200 += c[http.StatusOK]
		total503 += c[http.StatusServiceUnavailable]
	}
	t.Logf("publishes: %d; 200: %d; 503: %d; delivered: %d distinct (%d duplicates); 200 but lost: %d; max answer %v (seq %d), bound %v",
		len(results), total200, total503, got.len(), got.dups(), len(lost), maxDur.Round(time.Millisecond), maxSeq, answerBound)
	t.Logf("metrics: publish_unavailable_total %v, publish_timeouts_total %v, broker_reconnects_total %v",
		scrape(t, hc, n, "subsock_publish_unavailable_total"),
		scrape(t, hc, n, "subsock_publish_timeouts_total"),
		scrape(t, hc, n, "subsock_broker_reconnects_total"))

	if len(lost) > 0 {
		t.Errorf("%d publishes answered 200 were never delivered (200 but lost): %v", len(lost), head(lost, 20))
	}
	if len(transportErrs) > 0 {
		t.Errorf("%d publishes got no HTTP answer: %v", len(transportErrs), head(transportErrs, 5))
	}
	for _, ph := range []int{phaseKilled, phasePaused} {
		if counts[ph][http.StatusServiceUnavailable] == 0 {
			t.Errorf("no publish was refused with 503 while %s", phaseNames[ph])
		}
	}
	for ph, c := range counts {
		for status := range c {
			if status != http.StatusOK && status != http.StatusServiceUnavailable && status != 0 {
				t.Errorf("%s: %d publishes answered %d, want only 200 and 503", phaseNames[ph], c[status], status)
			}
		}
	}
	if maxDur > answerBound {
		t.Errorf("a publish took %v to be answered (seq %d), want at most -publish-timeout + 100ms = %v", maxDur, maxSeq, answerBound)
	}
}

func head[T any](s []T, n int) []T { return s[:min(len(s), n)] }

// ---------------------------------------------------------------- publisher

// pubResult is one POST /publish as the publisher saw it.
type pubResult struct {
	seq    int
	phase  int
	status int // 0 when no answer came
	err    string
	dur    time.Duration
}

// publisher POSTs {"seq":N} at a fixed rate, each request on its own
// goroutine so that a slow answer does not hold back the next publish.
type publisher struct {
	n     *node
	topic string
	hc    *http.Client

	phase atomic.Int64 // tags the publishes begun from now on
	seq   atomic.Int64

	mu  sync.Mutex
	res []pubResult

	quit chan struct{}
	done chan struct{} // closed when the ticking goroutine returned
	reqs sync.WaitGroup
	once sync.Once
}

func startPublisher(t *testing.T, n *node, topic string, every time.Duration) *publisher {
	t.Helper()
	tr := &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 512}
	p := &publisher{
		n:     n,
		topic: topic,
		// Far above -publish-timeout: an answer that late is measured, not
		// cut short by the client.
		hc:   &http.Client{Transport: tr, Timeout: 4 * waitFor},
		quit: make(chan struct{}),
		done: make(chan struct{}),
	}
	t.Cleanup(func() {
		p.stop()
		tr.CloseIdleConnections()
	})
	go p.run(every)
	return p
}

func (p *publisher) run(every time.Duration) {
	defer close(p.done)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-p.quit:
			return
		case <-tick.C:
		}
		seq := int(p.seq.Add(1))
		phase := int(p.phase.Load())
		p.reqs.Add(1)
		go func() {
			defer p.reqs.Done()
			p.record(p.post(seq, phase))
		}()
	}
}

func (p *publisher) post(seq, phase int) pubResult {
	r := pubResult{seq: seq, phase: phase}
	body := fmt.Appendf(nil, `{"seq":%d}`, seq)
	start := time.Now()
	resp, err := p.hc.Post(p.n.httpURL("/publish?topic="+p.topic), "application/json", bytes.NewReader(body))
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		r.status = resp.StatusCode
	}
	r.dur = time.Since(start)
	if err != nil {
		r.err = err.Error()
	}
	return r
}

func (p *publisher) record(r pubResult) {
	p.mu.Lock()
	p.res = append(p.res, r)
	p.mu.Unlock()
}

// stop ends the ticking and waits for every request to be answered.
func (p *publisher) stop() {
	p.once.Do(func() {
		close(p.quit)
		<-p.done
		p.reqs.Wait()
	})
}

func (p *publisher) issued() int { return int(p.seq.Load()) }

func (p *publisher) results() []pubResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.res)
}

// count is how many publishes begun in phase were answered status.
func (p *publisher) count(phase, status int) int {
	k := 0
	for _, r := range p.results() {
		if r.phase == phase && r.status == status {
			k++
		}
	}
	return k
}

// ---------------------------------------------------------------- subscriber

// seqSet records the sequence numbers a subscriber received.
type seqSet struct {
	mu   sync.Mutex
	seen map[int]int
	note chan struct{} // cap 1: something arrived
}

func (s *seqSet) add(seq int) {
	s.mu.Lock()
	s.seen[seq]++
	s.mu.Unlock()
	select {
	case s.note <- struct{}{}:
	default:
	}
}

func (s *seqSet) has(seq int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[seq] > 0
}

func (s *seqSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen)
}

func (s *seqSet) dups() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := 0
	for _, k := range s.seen {
		d += k - 1
	}
	return d
}

// waitAll waits up to limit, woken by each arrival, for every seq in want,
// and returns those still missing.
func (s *seqSet) waitAll(want []int, limit time.Duration) []int {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for {
		var missing []int
		for _, q := range want {
			if !s.has(q) {
				missing = append(missing, q)
			}
		}
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-s.note:
		case <-deadline.C:
			return missing
		}
	}
}

// collectSeqs reads every message of c on topic into a seqSet until the
// test ends; anything else the node sends fails the test at the end.
func collectSeqs(t *testing.T, c *wsClient, topic string) *seqSet {
	t.Helper()
	s := &seqSet{seen: map[int]int{}, note: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var unexpected []string
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-c.done:
				return
			case m := <-c.in:
				r, err := c.codec.decodeReply(m.data)
				if err != nil || r.op != "msg" || r.topic != topic {
					unexpected = append(unexpected, fmt.Sprintf("%q (%v)", m.data, err))
					continue
				}
				data, _ := r.data.(map[string]any)
				seq, ok := data["seq"].(int64)
				if !ok {
					unexpected = append(unexpected, fmt.Sprintf("%q: no seq", m.data))
					continue
				}
				s.add(int(seq))
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		if len(unexpected) > 0 {
			t.Errorf("subscriber got %d unexpected messages: %v", len(unexpected), head(unexpected, 5))
		}
	})
	return s
}
