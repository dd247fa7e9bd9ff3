// Steps of history_test.go, which restarts nodes between them: the page keeps its clients
// across the restarts, so each step picks up where the previous one left off. Every step
// resolves with what the Go test checks, or rejects with what went wrong.
//
// Query parameters: redis=host:port, a node on the same Redis as this page's own (the one
// the test restarts); memory=host:port, a node on the in-memory broker. Both keep history
// for test.h.>.
import { connect } from '/js/subsock.js';

const q = new URLSearchParams(location.search);
const FAST = { min: 50, max: 500 };
const PACE_MS = 5; // between publications, so an outage of seconds fits in the stream

function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// subscriber subscribes to t on a client of its own and records offsets, data and recover events.
async function subscriber(url, t) {
  const c = connect(url, { backoff: FAST });
  const r = { client: c, offsets: [], data: [], recovers: [], wake: () => {} };
  c.on('recover', (ev) => {
    if (ev.topic === t) r.recovers.push(ev);
    r.wake();
  });
  await c.subscribe(t, (data, _topic, { offset }) => {
    r.offsets.push(offset);
    r.data.push(data);
    r.wake();
  });
  r.until = (pred, what, ms = 10000) => within(new Promise((resolve) => {
    r.wake = () => { if (pred(r)) resolve(); };
    r.wake();
  }), ms, what).finally(() => { r.wake = () => {}; });
  return r;
}

// publisher publishes 1, 2, 3, ... to t with acks, one at a time, until stop().
function publisher(url, t) {
  const c = connect(url, { backoff: FAST });
  const p = { client: c, last: 0, sent: 0, errors: [] };
  let running = true;
  const done = (async () => {
    while (running) {
      try {
        p.last = (await c.publish(t, p.sent + 1, { ack: true })).offset;
        p.sent++;
      } catch (e) {
        p.errors.push(`${e.code}: ${e.msg}`);
        if (p.errors.length > 100) throw new Error(`publishing: ${p.errors.slice(-3)}`);
      }
      await new Promise((resolve) => setTimeout(resolve, PACE_MS));
    }
  })();
  p.stop = () => {
    running = false;
    return done;
  };
  return p;
}

const topic = (name) => `test.h.${name}.${Date.now()}`;
let redis = null; // {t, sub, pub} between the two steps
let memory = null;

window.steps = {
  // redisBegin: a subscriber on the redis node, a publisher on this page's node, running.
  async redisBegin() {
    const t = topic('restart');
    const sub = await subscriber(`ws://${q.get('redis')}/ws`, t);
    const pub = publisher(`ws://${location.host}/ws`, t);
    redis = { t, sub, pub };
    await sub.until((r) => r.offsets.length >= 50, '50 messages before the restart');
    return sub.offsets.length;
  },

  // redisEnd: after the restart, the subscriber recovers; 50 more, then the publisher stops
  // and the subscriber must have everything it published.
  async redisEnd() {
    const { sub, pub } = redis;
    await sub.until((r) => r.recovers.length > 0, 'the recovery');
    const after = sub.offsets.length;
    await sub.until((r) => r.offsets.length >= after + 50, '50 messages after the recovery');
    await pub.stop();
    await sub.until((r) => r.offsets.at(-1) === pub.last, `offset ${pub.last}`);
    const out = { offsets: sub.offsets, data: sub.data, recovers: sub.recovers, last: pub.last, sent: pub.sent, pubErrors: pub.errors };
    sub.client.close();
    pub.client.close();
    return out;
  },

  // memoryBegin: 5 publications on the memory node, received; resolves with their epoch.
  async memoryBegin() {
    const t = topic('epoch');
    const url = `ws://${q.get('memory')}/ws`;
    const sub = await subscriber(url, t);
    const pub = connect(url, { backoff: FAST });
    let epoch = null;
    for (let i = 1; i <= 5; i++) epoch = (await pub.publish(t, i, { ack: true })).epoch;
    await sub.until((r) => r.offsets.length === 5, '5 messages');
    memory = { t, sub, pub };
    return epoch;
  },

  // memoryEnd: after the restart the stream has a new epoch: one recover event, not
  // recovered; a new publication arrives at offset 1 of the new stream.
  async memoryEnd() {
    const { t, sub, pub } = memory;
    await sub.until((r) => r.recovers.length > 0, 'the recover event');
    await pub.publish(t, 6, { ack: true });
    await sub.until((r) => r.offsets.length === 6, 'the message after the restart');
    const out = { offsets: sub.offsets, data: sub.data, recovers: sub.recovers, position: sub.client.position(t) };
    sub.client.close();
    pub.close();
    return out;
  },
};
window.stepsReady = true;
