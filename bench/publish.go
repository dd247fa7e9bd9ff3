package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/gobwas/ws"

	"github.com/subsock/subsock/frame"
)

// publisher sends one value to a topic.
type publisher interface {
	publish(ctx context.Context, topic string, body []byte) (pubAnswer, error)
	close() error
}

// pubAnswer is what the node said about one publish: its count of local
// subscribers (-1 when it reports none) and, on a history topic, the
// publication's offset (0 otherwise).
type pubAnswer struct {
	subscribers int
	offset      uint64
}

// noAnswer is a publish the node did not answer about.
var noAnswer = pubAnswer{subscribers: -1}

var (
	_ publisher = (*httpPublisher)(nil)
	_ publisher = (*wsPublisher)(nil)
)

// httpPublisher posts to /publish over keep-alive connections.
type httpPublisher struct {
	client *http.Client
	url    string
	apiKey string
}

func newHTTPPublisher(target, apiKey string, conns int) *httpPublisher {
	tr := &http.Transport{
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	return &httpPublisher{
		client: &http.Client{Transport: tr, Timeout: 10 * time.Second},
		url:    httpBase(target) + "/publish?topic=",
		apiKey: apiKey,
	}
}

func (h *httpPublisher) publish(ctx context.Context, topic string, body []byte) (pubAnswer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url+url.QueryEscape(topic), bytes.NewReader(body))
	if err != nil {
		return noAnswer, err
	}
	req.Header.Set("Content-Type", "application/json")
	if h.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+h.apiKey)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return noAnswer, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return noAnswer, err
	}
	if resp.StatusCode != http.StatusOK {
		return noAnswer, &statusError{code: resp.StatusCode, body: string(bytes.TrimSpace(b))}
	}
	var r struct {
		Subscribers *int   `json:"subscribers"`
		Offset      uint64 `json:"offset"`
	}
	if err := json.Unmarshal(b, &r); err != nil || r.Subscribers == nil {
		return noAnswer, fmt.Errorf("%w: publish response %q", ErrMalformed, b)
	}
	return pubAnswer{subscribers: *r.Subscribers, offset: r.Offset}, nil
}

func (h *httpPublisher) close() error {
	h.client.CloseIdleConnections()
	return nil
}

// statusError is a non-200 answer to a publish.
type statusError struct {
	code int
	body string
}

func (e *statusError) Error() string {
	return "publish: HTTP " + strconv.Itoa(e.code) + ": " + e.body
}

// wsPublisher sends {"op":"pub"} requests on one WebSocket connection; a
// reader goroutine counts the acks and errors and answers pings.
type wsPublisher struct {
	nc     net.Conn
	mu     sync.Mutex // serialises writes
	nextID atomic.Uint64
	acks   atomic.Int64
	errs   atomic.Int64
	done   chan struct{}
}

func newWSPublisher(ctx context.Context, target string, timeout time.Duration) (*wsPublisher, error) {
	d := ws.Dialer{Timeout: timeout, Protocols: []string{Subprotocol}}
	nc, br, _, err := d.Dial(ctx, target)
	if err != nil {
		return nil, err
	}
	p := &wsPublisher{nc: nc, done: make(chan struct{})}
	c := &conn{nc: nc, buf: make([]byte, readBufSize)}
	if br != nil {
		c.reserve(br.Buffered())
		c.n, _ = br.Read(c.buf)
		ws.PutReader(br)
	}
	go p.read(c)
	return p, nil
}

// read consumes the publisher connection's replies until it closes.
func (p *wsPublisher) read(c *conn) {
	defer close(p.done)
	for {
		for c.r < c.n {
			h, payload, ok, err := c.nextFrame()
			if err != nil {
				return
			}
			if !ok {
				break
			}
			switch h.OpCode {
			case ws.OpPing:
				p.mu.Lock()
				_ = c.write(ws.OpPong, payload, time.Now().Add(time.Second))
				p.mu.Unlock()
			case ws.OpClose:
				return
			case ws.OpText:
				var r reply
				if parseReply(payload, &r) != nil {
					continue
				}
				switch r.kind {
				case replyAck:
					p.acks.Add(1)
				case replyErr:
					p.errs.Add(1)
				}
			}
		}
		if err := c.fill(); err != nil {
			return
		}
	}
}

func (p *wsPublisher) publish(_ context.Context, topic string, body []byte) (pubAnswer, error) {
	req := make([]byte, 0, len(body)+len(topic)+48)
	req = append(req, `{"op":"pub","id":`...)
	req = strconv.AppendUint(req, p.nextID.Add(1), 10)
	req = append(req, `,"topic":"`...)
	req = append(req, topic...)
	req = append(req, `","data":`...)
	req = append(req, body...)
	req = append(req, '}')
	var key [4]byte
	binary.LittleEndian.PutUint32(key[:], rand.Uint32())
	f := frame.AppendMaskedFrame(nil, ws.OpText, req, key)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.nc.SetWriteDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return noAnswer, err
	}
	_, err := p.nc.Write(f)
	return noAnswer, err
}

// wsPool spreads publishes over several WebSocket publishers, a topic
// always on the same one (its order kept): one connection carries at most
// a node's bound of requests waiting for the backbone (1,024), which one
// busy publisher can reach.
type wsPool []*wsPublisher

func newWSPool(ctx context.Context, target string, timeout time.Duration, n int) (wsPool, error) {
	pool := make(wsPool, 0, n)
	for range n {
		p, err := newWSPublisher(ctx, target, timeout)
		if err != nil {
			_ = pool.close()
			return nil, err
		}
		pool = append(pool, p)
	}
	return pool, nil
}

func (pool wsPool) publish(ctx context.Context, topic string, body []byte) (pubAnswer, error) {
	h := fnv.New32a()
	_, _ = h.Write([]byte(topic))
	return pool[h.Sum32()%uint32(len(pool))].publish(ctx, topic, body)
}

func (pool wsPool) close() error {
	var errs []error
	for _, p := range pool {
		errs = append(errs, p.close())
	}
	return errors.Join(errs...)
}

func (p *wsPublisher) close() error {
	p.mu.Lock()
	var key [4]byte
	_ = p.nc.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = p.nc.Write(frame.AppendMaskedFrame(nil, ws.OpClose, closePayload(1000), key))
	p.mu.Unlock()
	err := p.nc.Close()
	<-p.done
	return err
}

// pacePlan is one publish phase.
type pacePlan struct {
	rate     float64
	duration time.Duration
	step     int
	prefix   string
	size     int
	senders  int
	// seq holds each topic's last sequence number; phases continue it.
	seq []uint64
	// from and to bound the topics published, round-robin (to 0: all of
	// seq). Plans over disjoint ranges may share seq and run at once.
	from, to int
	// newest, when set, holds each topic's highest offset the node has
	// answered so far (history topics), readable while the phase runs.
	newest []atomic.Uint64
	// stop, when set, ends the phase early once closed (publishes in
	// flight still finish); duration then only bounds it.
	stop <-chan struct{}
	// stepEvery, when set, advances the step stamped by one for each
	// stepEvery of schedule, so one phase is followed slice by slice.
	stepEvery time.Duration
}

// stepAt is the step of a publish due at offset into the phase.
func (pl *pacePlan) stepAt(offset time.Duration) int {
	if pl.stepEvery <= 0 {
		return pl.step
	}
	return pl.step + int(offset/pl.stepEvery)
}

// paceResult is what a publish phase did.
type paceResult struct {
	start, end time.Time
	published  int64 // accepted by the node
	errors     int64
	late       int64 // sent more than lateAfter behind schedule
	// perTopic counts accepted publishes per topic.
	perTopic []int64
	// serverSubs sums the subscriber counts the node reported (-1 answers
	// excluded).
	serverSubs int64
	rtt        *hdr.Histogram
	errKinds   map[string]int64
}

// lateAfter is how far behind schedule a publish may start before it
// counts as late (the harness, not the node, was the bottleneck).
const lateAfter = 50 * time.Millisecond

type pubJob struct {
	topic int
	seq   uint64
	step  int
	due   time.Time
}

// pace publishes round-robin over the plan's topics at a fixed rate. Each
// payload carries its scheduled send time, so publisher delays count as
// latency.
func pace(ctx context.Context, pub publisher, pl pacePlan) *paceResult {
	total := max(1, int(pl.rate*pl.duration.Seconds()+0.5))
	res := &paceResult{perTopic: make([]int64, len(pl.seq)), rtt: newHist(), errKinds: map[string]int64{}}
	// Senders share one queue: a publish that waits for its fan-out must not
	// hold back the next one, so several are in flight, even to one topic.
	jobs := make(chan pubJob, 4096)
	var mu sync.Mutex // guards res while senders run
	var wg sync.WaitGroup
	for range max(1, pl.senders) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var body []byte
			for j := range jobs {
				if time.Since(j.due) > lateAfter {
					atomic.AddInt64(&res.late, 1)
				}
				body = appendPayload(body[:0], stamp{sent: j.due.UnixNano(), seq: j.seq, step: j.step}, pl.size)
				t0 := time.Now()
				a, err := pub.publish(ctx, pl.prefix+"."+strconv.Itoa(j.topic), body)
				took := time.Since(t0)
				if err == nil && pl.newest != nil && a.offset > 0 {
					storeMaxU(&pl.newest[j.topic], a.offset)
				}
				mu.Lock()
				if err != nil {
					res.errors++
					res.errKinds[publishErrorKind(err)]++
				} else {
					res.published++
					res.perTopic[j.topic]++
					if a.subscribers >= 0 {
						res.serverSubs += int64(a.subscribers)
					}
					recordDur(res.rtt, took)
				}
				mu.Unlock()
			}
		}()
	}

	res.start = time.Now()
	interval := time.Duration(float64(time.Second) / pl.rate)
	timer := time.NewTimer(0)
	defer timer.Stop()
	if pl.to == 0 {
		pl.to = len(pl.seq)
	}
	topic := pl.from
loop:
	for k := 0; k < total; k++ {
		due := res.start.Add(time.Duration(k) * interval)
		if wait := time.Until(due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				break loop
			case <-pl.stop:
				break loop
			case <-timer.C:
			}
		}
		select {
		case <-pl.stop:
			break loop
		default:
		}
		pl.seq[topic]++
		select {
		case jobs <- pubJob{topic: topic, seq: pl.seq[topic], step: pl.stepAt(due.Sub(res.start)), due: due}:
		case <-ctx.Done():
			break loop
		}
		if topic++; topic == pl.to {
			topic = pl.from
		}
	}
	close(jobs)
	wg.Wait()
	res.end = time.Now()
	return res
}

func publishErrorKind(err error) string {
	var se *statusError
	if errors.As(err, &se) {
		return "HTTP " + strconv.Itoa(se.code)
	}
	return errorKind(err)
}
