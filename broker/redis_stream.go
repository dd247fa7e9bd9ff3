package broker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/rueidis"
)

// Redis history. A topic's stream is two keys: a hash (meta) holding the
// epoch (e) and the last offset (o), and a Redis stream (pubs) holding the
// last Size publications, each under ID <offset>-1 with its payload in
// field p. Both get the TTL again at every publish. One script per call
// does everything atomically on the server, and the publish script itself
// PUBLISHes (SPUBLISH in a cluster) the stream form to the topic's
// channel, so that every node receives a topic's publications in offset
// order.
//
// A meta that is missing, or that counts publications while pubs is gone
// (expired, evicted, FLUSHALL), means the past is lost: the script starts
// the stream afresh under the new epoch its caller passes. The publish
// script learns that pubs is gone from its XADD NOMKSTREAM itself, saving
// a call: server-side, a script costs about 11µs, of which the exact
// MAXLEN trim takes 2 and each further call about 1.
//
// In a cluster both keys must live in the slot of the shard channel, which
// is the topic itself. Topics may hold braces, so the keys cannot simply
// wrap it in a hash tag: they start with a short tag chosen, per slot, to
// hash to that slot (slotTags).

// The scripts take KEYS meta, pubs.
//
// Publish: ARGV payload, size, TTL in ms (0: none), new epoch, channel;
// returns {offset, epoch}.
const publishStreamScript = `
local m = redis.call('HMGET', KEYS[1], 'e', 'o')
local epoch, last = m[1], tonumber(m[2] or '0')
local offset = string.format('%d', last + 1)
local id = false
if epoch then
  id = redis.call('XADD', KEYS[2], 'NOMKSTREAM', 'MAXLEN', ARGV[2], offset .. '-1', 'p', ARGV[1])
  if not id and last > 0 then
    epoch = false
  end
end
if not epoch then
  epoch, offset = ARGV[4], '1'
  redis.call('DEL', KEYS[2])
end
if not id then
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], offset .. '-1', 'p', ARGV[1])
end
redis.call('HSET', KEYS[1], 'e', epoch, 'o', offset)
if ARGV[3] ~= '0' then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
else
  redis.call('PERSIST', KEYS[1])
  redis.call('PERSIST', KEYS[2])
end
redis.call('PUBLISH', ARGV[5], '\255' .. offset .. ':' .. epoch .. ':' .. ARGV[1])
return {offset, epoch}
`

// Read: ARGV new epoch, TTL in ms (0: none), since, last, limit; returns
// {offset, epoch, id, payload, id, payload, ...}, oldest first.
const readStreamScript = `
local m = redis.call('HMGET', KEYS[1], 'e', 'o')
local epoch, offset = m[1], m[2] or '0'
if not epoch or (offset ~= '0' and redis.call('EXISTS', KEYS[2]) == 0) then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', epoch, 'o', 0)
  if ARGV[2] ~= '0' then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
  end
  return {'0', epoch}
end
local out = {offset, epoch}
local limit = tonumber(ARGV[5])
if limit <= 0 then
  return out
end
local last = tonumber(ARGV[4])
if last > 0 then
  local es = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', last)
  for i = #es, math.max(1, #es - limit + 1), -1 do
    out[#out + 1] = es[i][1]
    out[#out + 1] = es[i][2][2]
  end
else
  local es = redis.call('XRANGE', KEYS[2], '(' .. ARGV[3] .. '-1', '+', 'COUNT', limit)
  for i = 1, #es do
    out[#out + 1] = es[i][1]
    out[#out + 1] = es[i][2][2]
  end
end
return out
`

var (
	publishStream  = rueidis.NewLuaScript(publishStreamScript)
	spublishStream = rueidis.NewLuaScript(strings.Replace(publishStreamScript, "'PUBLISH'", "'SPUBLISH'", 1))
	readStream     = rueidis.NewLuaScript(readStreamScript)
)

// slotTags returns, for each cluster slot, a short string that hashes to
// it: base-36 numbers are tried in order until every slot has one (about
// 170,000 tries, a few milliseconds, once per process).
var slotTags = sync.OnceValue(func() *[numSlots]string {
	var tags [numSlots]string
	left := numSlots
	for n := uint64(0); left > 0; n++ {
		tag := strconv.FormatUint(n, 36)
		if s := keySlot(tag); tags[s] == "" {
			tags[s] = tag
			left--
		}
	}
	return &tags
})

// streamKeys are the meta and pubs keys of topic's stream, in the slot of
// the channel topic: {tag}subsock.meta:<topic> and
// {tag}subsock.pubs:<topic>.
func streamKeys(topic string) (meta, pubs string) {
	tag := slotTags()[keySlot(topic)]
	return "{" + tag + "}subsock.meta:" + topic, "{" + tag + "}subsock.pubs:" + topic
}

// ttlArg is p.TTL in whole milliseconds, rounded up, for PEXPIRE.
func ttlArg(p StreamPolicy) string {
	ms := (p.TTL + 999_999) / 1_000_000
	return strconv.FormatInt(int64(ms), 10)
}

var _ Streamer = (*redisBroker)(nil)

// PublishStream runs the publish script once, only while healthy, with
// the health rules of Publish.
func (b *redisBroker) PublishStream(ctx context.Context, topic string, payload []byte, p StreamPolicy) (Position, error) {
	p = p.normalized()
	meta, pubs := streamKeys(topic)
	script := publishStream
	if b.cluster {
		script = spublishStream
	}
	var pos Position
	err := b.roundTrip(ctx, "publish stream", topic, func(ctx context.Context) error {
		// The payload is lent to rueidis, which writes it before Exec
		// returns; the script is not retried behind our back.
		r, err := script.Exec(ctx, b.pub, []string{meta, pubs}, []string{
			rueidis.BinaryString(payload), strconv.Itoa(p.Size), ttlArg(p), newEpoch(), topic,
		}).ToArray()
		if err != nil {
			return err
		}
		pos, err = parsePosition(r)
		return err
	})
	if err != nil {
		return Position{}, err
	}
	b.stats.published.Add(1)
	return pos, nil
}

// ReadStream runs the read script once, with the health rules of Publish:
// while Health is non-nil this node's subscription may miss what follows
// the position read.
func (b *redisBroker) ReadStream(ctx context.Context, topic string, q StreamQuery, p StreamPolicy) (Position, []Publication, error) {
	p = p.normalized()
	meta, keyPubs := streamKeys(topic)
	var (
		pos  Position
		pubs []Publication
	)
	err := b.roundTrip(ctx, "read stream", topic, func(ctx context.Context) error {
		r, err := readStream.Exec(ctx, b.pub, []string{meta, keyPubs}, []string{
			newEpoch(), ttlArg(p), strconv.FormatUint(q.Since, 10), strconv.Itoa(max(q.Last, 0)), strconv.Itoa(max(q.Limit, 0)),
		}).ToArray()
		if err != nil {
			return err
		}
		if pos, err = parsePosition(r); err != nil {
			return err
		}
		pubs, err = parsePublications(r[2:])
		return err
	})
	if err != nil {
		return Position{}, nil, err
	}
	return pos, pubs, nil
}

var errBadScriptReply = errors.New("unexpected stream script reply")

func parsePosition(r []rueidis.RedisMessage) (Position, error) {
	if len(r) < 2 {
		return Position{}, errBadScriptReply
	}
	o, err := r[0].ToString()
	if err != nil {
		return Position{}, err
	}
	e, err := r[1].ToString()
	if err != nil {
		return Position{}, err
	}
	off, err := strconv.ParseUint(o, 10, 64)
	if err != nil {
		return Position{}, fmt.Errorf("%w: offset %q", errBadScriptReply, o)
	}
	return Position{Offset: off, Epoch: e}, nil
}

// parsePublications reads id, payload pairs; an id is <offset>-1.
func parsePublications(r []rueidis.RedisMessage) ([]Publication, error) {
	if len(r)%2 != 0 {
		return nil, errBadScriptReply
	}
	if len(r) == 0 {
		return nil, nil
	}
	pubs := make([]Publication, len(r)/2)
	for i := range pubs {
		id, err := r[2*i].ToString()
		if err != nil {
			return nil, err
		}
		o, _, _ := strings.Cut(id, "-")
		if pubs[i].Offset, err = strconv.ParseUint(o, 10, 64); err != nil {
			return nil, fmt.Errorf("%w: id %q", errBadScriptReply, id)
		}
		// ToString hands over the reply's own string: converting it
		// copies it into the caller's slice.
		p, err := r[2*i+1].ToString()
		if err != nil {
			return nil, err
		}
		pubs[i].Payload = []byte(p)
	}
	return pubs, nil
}
