package broker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/redis/rueidis"
	"go.uber.org/zap"
)

// redisBroker carries topics over Redis Pub/Sub (one server) or sharded
// Pub/Sub (a cluster, SPUBLISH/SSUBSCRIBE).
//
// Publishing goes through pub, rueidis's auto-pipelined client; in a
// cluster it routes each SPUBLISH to the owner of the topic's slot.
// Subscriptions live on one dedicated connection per server (per master in
// a cluster); rueidis's reader goroutine of that connection calls the
// Handler. A supervisor goroutine brings lost connections back and makes
// what is subscribed on each connection match the interest held.
//
// Publishing and subscribing use different connections, so a publish
// connection that is up says nothing about the subscriptions: after a
// restart it reconnects on its own at the first PUBLISH, before the
// supervisor has resubscribed, and Redis accepts a message that reaches no
// one here. Publish therefore goes through only while health is nil, which
// the supervisor restores only after every held topic is confirmed
// subscribed and the server answers on every connection, and fails if a
// loss was recorded while it was under way.
//
// Locks: mu is held across subscription round trips, so the rueidis hooks
// never take it (their goroutine is the one reading those replies); they
// take only migrated.mu, which is never held while taking mu. health is
// lock-free.
type redisBroker struct {
	h       Handler
	opts    Options
	log     *zap.Logger
	cluster bool
	copt    rueidis.ClientOption // template for the clients this broker makes
	pub     rueidis.Client
	stats   counters
	health  health
	lost    atomic.Bool // a connection was lost since the last full recovery
	closed  atomic.Bool

	mu     sync.Mutex
	topics map[string]struct{}   // interest held: what must be subscribed
	nodes  map[string]*redisNode // subscription connection per address; "" for a standalone server
	slots  *slotMap              // cluster only: which master serves each slot

	migrated struct {
		sync.Mutex
		names  []string       // cluster: channels the server unsubscribed us from
		expect map[string]int // cluster: sunsubscribe confirmations of our own still due, per channel
	}

	ctx    context.Context // cancelled by Close, to abort the supervisor's round trips
	cancel context.CancelFunc
	wake   chan struct{} // cap 1: a connection failed, or a slot moved
	wg     sync.WaitGroup
}

var _ Broker = (*redisBroker)(nil)

// redisNode is a subscription connection to one server.
type redisNode struct {
	addr    string
	client  rueidis.Client // owned client of a cluster node; nil standalone (pub's pool is used)
	conn    rueidis.DedicatedClient
	topics  map[string]struct{} // subscribed on conn; guarded by redisBroker.mu
	failed  atomic.Bool
	closing atomic.Bool
}

// slotMap is a cluster's topology as CLUSTER SLOTS reports it.
type slotMap struct {
	masters []string
	owner   [numSlots]int16 // index into masters; -1 when no master serves the slot
}

func (s *slotMap) ownerOf(topic string) (string, bool) {
	i := s.owner[keySlot(topic)]
	if i < 0 {
		return "", false
	}
	return s.masters[i], true
}

// maxChannelsPerCommand keeps single (UN)SUBSCRIBE commands bounded; the
// commands of one call still go out as one pipeline, one round trip.
const maxChannelsPerCommand = 1024

func openRedis(ep endpoint, h Handler, opts Options) (*redisBroker, error) {
	cluster := ep.kind == kindRedisCluster
	copt := rueidis.ClientOption{
		InitAddress:       ep.addrs,
		Username:          ep.username,
		Password:          ep.password,
		SelectDB:          ep.db,
		DisableCache:      true, // client-side caching serves reads; a broker does none
		Dialer:            net.Dialer{Timeout: opts.DialTimeout},
		ConnWriteTimeout:  opts.Timeout,
		ForceSingleClient: !cluster,
		ShuffleInit:       true,
	}
	pub, err := rueidis.NewClient(copt)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &redisBroker{
		h:       h,
		opts:    opts,
		log:     opts.Logger,
		cluster: cluster,
		copt:    copt,
		pub:     pub,
		topics:  make(map[string]struct{}),
		nodes:   make(map[string]*redisNode),
		ctx:     ctx,
		cancel:  cancel,
		wake:    make(chan struct{}, 1),
	}
	rctx, rcancel := context.WithTimeout(ctx, opts.Timeout)
	defer rcancel()
	b.mu.Lock()
	err = b.reconcileLocked(rctx)
	b.mu.Unlock()
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	b.wg.Add(1)
	go b.supervise()
	return b, nil
}

// errLostWhilePublishing is the cause reported for a publish that Redis
// accepted while a loss was being recorded: it may have gone out while this
// node was not subscribed.
var errLostWhilePublishing = errors.New("connection lost or resubscribing while publishing")

// Publish sends one PUBLISH (SPUBLISH in a cluster), only while healthy.
func (b *redisBroker) Publish(ctx context.Context, topic string, payload []byte) error {
	err := b.roundTrip(ctx, "publish", topic, func(ctx context.Context) error {
		var cmd rueidis.Completed
		if b.cluster {
			cmd = b.pub.B().Spublish().Channel(topic).Message(rueidis.BinaryString(payload)).Build()
		} else {
			cmd = b.pub.B().Publish().Channel(topic).Message(rueidis.BinaryString(payload)).Build()
		}
		// PUBLISH is not retryable in rueidis, so a failed one is never
		// sent again behind our back on a new connection.
		return b.pub.Do(ctx, cmd).Error()
	})
	if err == nil {
		b.stats.published.Add(1)
	}
	return err
}

// PublishBatch sends msgs as one pipeline (DoMulti keeps their order on
// the connection, and Redis Cluster's per slot), waits for every reply and
// applies Publish's rules to the whole: if any reply is an error, or a
// loss was recorded meanwhile, every message of the batch fails (some may
// still be delivered, which Publish allows; none is reported done without
// its reply).
func (b *redisBroker) PublishBatch(ctx context.Context, msgs []Message, errs []error) {
	if len(msgs) == 0 {
		return
	}
	cmds := make(rueidis.Commands, len(msgs))
	for i, m := range msgs {
		if b.cluster {
			cmds[i] = b.pub.B().Spublish().Channel(m.Topic).Message(rueidis.BinaryString(m.Payload)).Build()
		} else {
			cmds[i] = b.pub.B().Publish().Channel(m.Topic).Message(rueidis.BinaryString(m.Payload)).Build()
		}
	}
	err := b.roundTrip(ctx, "publish", msgs[0].Topic, func(ctx context.Context) error {
		for _, r := range b.pub.DoMulti(ctx, cmds...) {
			if err := r.Error(); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		b.stats.published.Add(uint64(len(msgs)))
	}
	for i := range errs[:len(msgs)] {
		errs[i] = err
	}
}

// roundTrip runs do, a call that publishes to or reads for topic, under the
// rules of Publish: it fails at once while Health is non-nil, bounds ctx by
// Options.Timeout when it has no deadline, and fails when a loss was
// recorded while do was under way. op names the call in the error.
func (b *redisBroker) roundTrip(ctx context.Context, op, topic string, do func(context.Context) error) error {
	if b.closed.Load() {
		return ErrClosed
	}
	st := b.health.load()
	if st.err != nil {
		b.stats.errors.Add(1)
		return st.err
	}
	// rueidis honours the deadline both while dialing and while waiting
	// for the reply; without one a stopped server would hold the caller
	// until ConnWriteTimeout closes the connection.
	ctx, cancel := callContext(ctx, b.opts.Timeout)
	defer cancel()
	err := do(ctx)
	if err == nil && b.health.load().epoch != st.epoch {
		err = errLostWhilePublishing
	}
	if err != nil {
		b.stats.errors.Add(1)
		if b.closed.Load() {
			return ErrClosed
		}
		b.suspect(err)
		// Refused connections, timeouts and CLUSTERDOWN alike mean the
		// message did not get onto the backbone, or not while this node
		// was subscribed.
		return fmt.Errorf("%w: %s %q: %w", ErrUnavailable, op, topic, err)
	}
	return nil
}

// suspect turns Health non-nil after a publish that failed without an
// answer from Redis (a dropped connection, or no reply before the
// deadline: a stalled server), so that later publishes fail at once and
// /healthz says so, until the supervisor has seen every connection answer
// again. A reply from Redis (CLUSTERDOWN, ...) and a caller that gave up
// say nothing about the connections.
func (b *redisBroker) suspect(err error) {
	if errors.Is(err, errLostWhilePublishing) || errors.Is(err, context.Canceled) {
		return
	}
	if _, isReply := rueidis.IsRedisErr(err); isReply {
		return
	}
	b.health.lose(fmt.Errorf("%w: redis publish: %w", ErrUnavailable, err))
	b.kick()
}

// Subscribe records interest and subscribes what is new, one pipeline per
// server.
func (b *redisBroker) Subscribe(ctx context.Context, topics ...string) error {
	return b.change(ctx, topics, true)
}

// Unsubscribe drops interest and unsubscribes, one pipeline per server.
func (b *redisBroker) Unsubscribe(ctx context.Context, topics ...string) error {
	return b.change(ctx, topics, false)
}

func (b *redisBroker) change(ctx context.Context, topics []string, sub bool) error {
	if b.closed.Load() {
		return ErrClosed
	}
	ctx, cancel := callContext(ctx, b.opts.Timeout)
	defer cancel()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed.Load() {
		return ErrClosed
	}
	var changed []string
	for _, t := range topics {
		_, held := b.topics[t]
		switch {
		case sub && !held:
			b.topics[t] = struct{}{}
			changed = append(changed, t)
		case !sub && held:
			delete(b.topics, t)
			changed = append(changed, t)
		}
	}
	if len(changed) == 0 {
		return nil
	}
	err := b.applyLocked(ctx, changed, sub)
	if err != nil {
		b.stats.errors.Add(1)
	}
	return err
}

// applyLocked sends (un)subscriptions for topics to the connections that
// serve them. A topic whose connection is down stays in b.topics only: the
// supervisor subscribes it on recovery, and the caller learns of the delay
// through ErrUnavailable.
func (b *redisBroker) applyLocked(ctx context.Context, topics []string, sub bool) error {
	byNode := make(map[*redisNode][]string)
	var down error
	for _, t := range topics {
		n := b.nodeFor(t, sub)
		if n == nil {
			if sub && down == nil {
				down = b.downCause()
			}
			continue
		}
		_, on := n.topics[t]
		if sub != on {
			byNode[n] = append(byNode[n], t)
		}
	}
	errs := []error{}
	if down != nil {
		errs = append(errs, fmt.Errorf("%w: %w", ErrUnavailable, down))
	}
	for n, ts := range byNode {
		if err := b.sendLocked(ctx, n, ts, sub); err != nil {
			errs = append(errs, fmt.Errorf("%w: %w", ErrUnavailable, err))
		}
	}
	return errors.Join(errs...)
}

// nodeFor is the live connection that serves topic, or, to unsubscribe,
// the one it is subscribed on; nil when there is none.
func (b *redisBroker) nodeFor(topic string, sub bool) *redisNode {
	if !b.cluster {
		if n := b.nodes[""]; n != nil && !n.failed.Load() {
			return n
		}
		return nil
	}
	if !sub {
		for _, n := range b.nodes {
			if _, on := n.topics[topic]; on && !n.failed.Load() {
				return n
			}
		}
		return nil
	}
	if b.slots == nil {
		return nil
	}
	addr, ok := b.slots.ownerOf(topic)
	if !ok {
		return nil
	}
	if n := b.nodes[addr]; n != nil && !n.failed.Load() {
		return n
	}
	return nil
}

func (b *redisBroker) downCause() error {
	if err := b.health.load().err; err != nil {
		return err
	}
	return errors.New("not connected")
}

// sendLocked (un)subscribes topics on n in one pipeline and records what
// the server confirmed. A connection error fails n for the supervisor to
// replace; a MOVED reply means the slot map is stale, which the supervisor
// refreshes.
func (b *redisBroker) sendLocked(ctx context.Context, n *redisNode, topics []string, sub bool) error {
	groups := b.group(topics)
	cmds := make(rueidis.Commands, 0, len(groups))
	for _, g := range groups {
		cmds = append(cmds, b.command(n.conn, g, sub))
	}
	if b.cluster && !sub {
		b.expectUnsubscribed(groups, 1)
	}
	var first error
	for i, r := range n.conn.DoMulti(ctx, cmds...) {
		err := r.Error()
		if err != nil && b.cluster && !sub {
			// No confirmation comes for a command that failed.
			b.expectUnsubscribed(groups[i:i+1], -1)
		}
		if re, isReply := rueidis.IsRedisErr(err); isReply && !sub {
			if _, moved := re.IsMoved(); moved {
				// The node no longer serves the slot, so it dropped our
				// shard subscription itself (and said so with a
				// sunsubscribe): nothing is left to unsubscribe.
				err = nil
			}
		}
		if err != nil {
			if first == nil {
				first = fmt.Errorf("%s: %w", n.addr, err)
			}
			if _, isReply := rueidis.IsRedisErr(err); isReply {
				b.kick()
			} else {
				b.fail(n, err)
			}
			continue
		}
		for _, t := range groups[i] {
			if sub {
				n.topics[t] = struct{}{}
			} else {
				delete(n.topics, t)
			}
		}
	}
	return first
}

// group splits topics into the channel lists of single commands: bounded in
// length and, in a cluster, of one slot each (SSUBSCRIBE's rule).
func (b *redisBroker) group(topics []string) [][]string {
	var groups [][]string
	chunk := func(ts []string) {
		for len(ts) > maxChannelsPerCommand {
			groups = append(groups, ts[:maxChannelsPerCommand])
			ts = ts[maxChannelsPerCommand:]
		}
		groups = append(groups, ts)
	}
	if !b.cluster {
		chunk(topics)
		return groups
	}
	bySlot := make(map[uint16][]string)
	for _, t := range topics {
		s := keySlot(t)
		bySlot[s] = append(bySlot[s], t)
	}
	for _, ts := range bySlot {
		chunk(ts)
	}
	return groups
}

func (b *redisBroker) command(c rueidis.DedicatedClient, channels []string, sub bool) rueidis.Completed {
	switch {
	case b.cluster && sub:
		return c.B().Ssubscribe().Channel(channels...).Build()
	case b.cluster:
		return c.B().Sunsubscribe().Channel(channels...).Build()
	case sub:
		return c.B().Subscribe().Channel(channels...).Build()
	default:
		return c.B().Unsubscribe().Channel(channels...).Build()
	}
}

// onMessage is the rueidis hook of every subscription connection.
func (b *redisBroker) onMessage(m rueidis.PubSubMessage) {
	b.stats.received.Add(1)
	// The string is the reader's own copy of the bytes; lending it as a
	// read-only slice saves a copy per message.
	b.h(m.Channel, unsafe.Slice(unsafe.StringData(m.Message), len(m.Message)))
}

// expectUnsubscribed counts (delta 1) or uncounts (-1) the sunsubscribe
// confirmations that our own SUNSUBSCRIBEs of channels will bring, so
// that onSubscription can tell them from the server dropping a channel.
func (b *redisBroker) expectUnsubscribed(channels [][]string, delta int) {
	b.migrated.Lock()
	defer b.migrated.Unlock()
	if b.migrated.expect == nil {
		b.migrated.expect = make(map[string]int)
	}
	for _, g := range channels {
		for _, ch := range g {
			if n := b.migrated.expect[ch] + delta; n > 0 {
				b.migrated.expect[ch] = n
			} else {
				delete(b.migrated.expect, ch)
			}
		}
	}
}

// onSubscription notes the channels a cluster node drops on its own, as it
// does when their slot moves, for the supervisor to resubscribe elsewhere.
// Until it has, the channel's publishes go to a master where this node is
// not subscribed, so Health turns non-nil at once.
func (b *redisBroker) onSubscription(s rueidis.PubSubSubscription) {
	if s.Kind != "sunsubscribe" {
		return
	}
	b.migrated.Lock()
	if n := b.migrated.expect[s.Channel]; n > 0 {
		if n == 1 {
			delete(b.migrated.expect, s.Channel)
		} else {
			b.migrated.expect[s.Channel] = n - 1
		}
		b.migrated.Unlock()
		return
	}
	b.migrated.names = append(b.migrated.names, s.Channel)
	b.migrated.Unlock()
	b.health.lose(fmt.Errorf("%w: redis: shard channel %q dropped by the server (slot moved)", ErrUnavailable, s.Channel))
	b.kick()
}

func (b *redisBroker) kick() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// fail marks n lost: Health turns non-nil at once and the supervisor
// replaces the connection.
func (b *redisBroker) fail(n *redisNode, err error) {
	if n.closing.Load() || !n.failed.CompareAndSwap(false, true) {
		return
	}
	b.stats.errors.Add(1)
	b.lost.Store(true)
	b.health.lose(fmt.Errorf("%w: redis %s: %w", ErrUnavailable, displayAddr(n.addr, b.copt), err))
	b.log.Warn("broker: redis connection lost", zap.String("addr", displayAddr(n.addr, b.copt)), zap.Error(err))
	b.kick()
}

func displayAddr(addr string, o rueidis.ClientOption) string {
	if addr == "" && len(o.InitAddress) > 0 {
		return o.InitAddress[0]
	}
	return addr
}

// dialNode opens a subscription connection to addr ("" standalone) and
// checks that it answers.
func (b *redisBroker) dialNode(ctx context.Context, addr string) (*redisNode, error) {
	n := &redisNode{addr: addr, topics: make(map[string]struct{})}
	client := b.pub
	if b.cluster {
		o := b.copt
		o.InitAddress = []string{addr}
		o.ForceSingleClient = true
		c, err := rueidis.NewClient(o)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", addr, err)
		}
		n.client, client = c, c
	}
	n.conn, _ = client.Dedicate() // the release func is called by conn.Close
	hooks := rueidis.PubSubHooks{OnMessage: b.onMessage}
	if b.cluster {
		hooks.OnSubscription = b.onSubscription
	}
	wait := n.conn.SetPubSubHooks(hooks)
	b.wg.Add(1)
	go b.watch(n, wait)
	if err := n.conn.Do(ctx, n.conn.B().Ping().Build()).Error(); err != nil {
		closeNode(n)
		return nil, fmt.Errorf("%s: %w", displayAddr(addr, b.copt), err)
	}
	return n, nil
}

// watch waits for n's connection to end; rueidis closes wait then, after
// sending the cause of an unexpected end.
func (b *redisBroker) watch(n *redisNode, wait <-chan error) {
	defer b.wg.Done()
	for err := range wait {
		if err != nil {
			b.fail(n, err)
		}
	}
}

func closeNode(n *redisNode) {
	n.closing.Store(true)
	n.conn.Close()
	if n.client != nil {
		n.client.Close()
	}
}

// supervise recovers after every wake, with backoff between failed tries.
func (b *redisBroker) supervise() {
	defer b.wg.Done()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-b.wake:
		}
		for attempt := 0; ; attempt++ {
			err := b.recover()
			if err == nil || b.ctx.Err() != nil {
				break
			}
			b.stats.errors.Add(1)
			b.health.lose(fmt.Errorf("%w: %w", ErrUnavailable, err))
			if !sleepCtx(b.ctx, backoff(b.opts, attempt)) {
				return
			}
		}
	}
}

// recover replaces failed connections, resubscribes and checks that every
// connection answers, then makes Health nil; unless the wake was only for
// channels that the broker itself unsubscribed.
func (b *redisBroker) recover() error {
	b.migrated.Lock()
	names := b.migrated.names
	b.migrated.names = nil
	b.migrated.Unlock()

	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed.Load() {
		return nil
	}
	// Loaded before any round trip: a loss recorded from here on bumps the
	// epoch, and recovered below then refuses to report health.
	st := b.health.load()
	if !b.lost.Load() && !b.anyFailedLocked() && st.err == nil {
		moved := false
		for _, t := range names {
			if _, held := b.topics[t]; held {
				moved = true
				break
			}
		}
		if !moved {
			return nil
		}
	}
	ctx, cancel := context.WithTimeout(b.ctx, b.opts.Timeout)
	defer cancel()
	if err := b.reconcileLocked(ctx); err != nil {
		return err
	}
	if err := b.probeLocked(ctx); err != nil {
		return err
	}
	if !b.health.recovered(st.epoch) {
		return errors.New("connection lost during resubscription")
	}
	if b.lost.Swap(false) {
		b.stats.reconnects.Add(1)
		b.log.Info("broker: redis reconnected", zap.Int("topics", len(b.topics)))
	}
	return nil
}

// probeLocked PINGs every subscription connection and the publishing
// client: health that was lost to a stalled server (publishes timing out,
// no connection failed) comes back only once the server answers again. A
// subscription connection that does not answer is failed, as rueidis's own
// keepalive would fail it.
func (b *redisBroker) probeLocked(ctx context.Context) error {
	for _, n := range b.nodes {
		if err := n.conn.Do(ctx, n.conn.B().Ping().Build()).Error(); err != nil {
			if _, isReply := rueidis.IsRedisErr(err); !isReply {
				b.fail(n, err)
			}
			return fmt.Errorf("%s: PING: %w", displayAddr(n.addr, b.copt), err)
		}
	}
	if err := b.pub.Do(ctx, b.pub.B().Ping().Build()).Error(); err != nil {
		return fmt.Errorf("PING: %w", err)
	}
	return nil
}

func (b *redisBroker) anyFailedLocked() bool {
	for _, n := range b.nodes {
		if n.failed.Load() {
			return true
		}
	}
	return false
}

// reconcileLocked makes the subscription connections match the interest
// held: failed connections are replaced, the slot map refreshed (cluster),
// and every topic subscribed on its server's connection and nowhere else.
func (b *redisBroker) reconcileLocked(ctx context.Context) error {
	for addr, n := range b.nodes {
		if n.failed.Load() {
			closeNode(n)
			delete(b.nodes, addr)
		}
	}
	want := map[string][]string{}
	if !b.cluster {
		all := make([]string, 0, len(b.topics))
		for t := range b.topics {
			all = append(all, t)
		}
		want[""] = all
	} else {
		sm, err := b.fetchSlots(ctx)
		if err != nil {
			return err
		}
		b.slots = sm
		for _, m := range sm.masters {
			want[m] = nil
		}
		for t := range b.topics {
			addr, ok := sm.ownerOf(t)
			if !ok {
				return fmt.Errorf("slot %d of %q is not served", keySlot(t), t)
			}
			want[addr] = append(want[addr], t)
		}
		for addr, n := range b.nodes {
			if _, ok := want[addr]; !ok {
				closeNode(n)
				delete(b.nodes, addr)
			}
		}
	}
	var errs []error
	for addr, topics := range want {
		n := b.nodes[addr]
		if n == nil {
			var err error
			if n, err = b.dialNode(ctx, addr); err != nil {
				errs = append(errs, err)
				continue
			}
			b.nodes[addr] = n
		}
		var stale []string
		for t := range n.topics {
			if _, held := b.topics[t]; !held {
				stale = append(stale, t)
			} else if b.cluster {
				if owner, _ := b.slots.ownerOf(t); owner != addr {
					stale = append(stale, t)
				}
			}
		}
		var missing []string
		for _, t := range topics {
			if _, on := n.topics[t]; !on {
				missing = append(missing, t)
			}
		}
		if len(stale) > 0 {
			if err := b.sendLocked(ctx, n, stale, false); err != nil {
				errs = append(errs, err)
			}
		}
		if len(missing) > 0 {
			if err := b.sendLocked(ctx, n, missing, true); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// fetchSlots reads CLUSTER SLOTS: [[start, end, [host, port, id], replicas...], ...].
func (b *redisBroker) fetchSlots(ctx context.Context) (*slotMap, error) {
	ranges, err := b.pub.Do(ctx, b.pub.B().ClusterSlots().Build()).ToArray()
	if err != nil {
		return nil, fmt.Errorf("CLUSTER SLOTS: %w", err)
	}
	sm := &slotMap{}
	for i := range sm.owner {
		sm.owner[i] = -1
	}
	index := map[string]int16{}
	for _, r := range ranges {
		f, err := r.ToArray()
		if err != nil || len(f) < 3 {
			return nil, fmt.Errorf("CLUSTER SLOTS: malformed range")
		}
		start, err1 := f[0].AsInt64()
		end, err2 := f[1].AsInt64()
		master, err3 := f[2].ToArray()
		if err1 != nil || err2 != nil || err3 != nil || len(master) < 2 || start < 0 || end >= numSlots || start > end {
			return nil, fmt.Errorf("CLUSTER SLOTS: malformed range")
		}
		host, err1 := master[0].ToString()
		port, err2 := master[1].AsInt64()
		if err1 != nil || err2 != nil || host == "" {
			return nil, fmt.Errorf("CLUSTER SLOTS: malformed node")
		}
		addr := net.JoinHostPort(host, strconv.FormatInt(port, 10))
		idx, ok := index[addr]
		if !ok {
			idx = int16(len(sm.masters))
			index[addr] = idx
			sm.masters = append(sm.masters, addr)
		}
		for s := start; s <= end; s++ {
			sm.owner[s] = idx
		}
	}
	return sm, nil
}

// Health is nil while every subscription connection is up, every held
// topic is subscribed, and the server has answered since the last loss.
func (b *redisBroker) Health() error {
	if b.closed.Load() {
		return ErrClosed
	}
	return b.health.load().err
}

// Stats returns the counters.
func (b *redisBroker) Stats() Stats { return b.stats.snapshot() }

// Close closes every connection and waits for the supervisor and the
// connection watchers.
func (b *redisBroker) Close() error {
	if !b.closed.CompareAndSwap(false, true) {
		return nil
	}
	b.cancel()
	b.mu.Lock()
	for addr, n := range b.nodes {
		closeNode(n)
		delete(b.nodes, addr)
	}
	b.mu.Unlock()
	b.pub.Close()
	b.wg.Wait()
	return nil
}

// backoff is the wait before reconnect attempt n (from 0): doubling from
// BackoffMin up to BackoffMax, with up to 25% jitter so that nodes that
// lost the backbone together do not come back in lockstep.
func backoff(o Options, attempt int) time.Duration {
	d := o.BackoffMin
	for i := 0; i < attempt && d < o.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, o.BackoffMax)
	return d + rand.N(d/4+1)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
