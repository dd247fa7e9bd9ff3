// In-browser tests of subsock.js against real subsock nodes, run by client_test.go in headless
// Chromium. Each case runs in turn; window.__results holds {name, ok, err, ms} for each.
//
// Query parameters (set by the Go test):
//   jwt=host:port     a node that requires HS256 tokens; this page's origin serves /token?ttl=s
//   silent=host:port  a WebSocket server that completes the handshake and then never answers
// This page's own node keeps history for test.h.> (1000 publications).
import { connect, sse, validTopic, reconnectDelay, SubsockError, CloseCode } from '/js/subsock.js';
import { tap, socketsOf } from './spy.js';

const q = new URLSearchParams(location.search);
const WS = `ws://${location.host}/ws`;
const FAST = { min: 50, max: 500 };

const cases = [];
const test = (name, fn) => cases.push({ name, fn });
let cleanups = [];

// --- helpers ------------------------------------------------------------------------------

class Failure extends Error {}
function assert(cond, msg) {
  if (!cond) throw new Failure(msg);
}

function same(a, b) {
  if (a instanceof Uint8Array || b instanceof Uint8Array) {
    return a instanceof Uint8Array && b instanceof Uint8Array && a.length === b.length && a.every((v, i) => v === b[i]);
  }
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((v, i) => same(v, b[i]));
  }
  if (a && b && typeof a === 'object' && typeof b === 'object') {
    const ka = Object.keys(a).sort();
    const kb = Object.keys(b).sort();
    return same(ka, kb) && ka.every((k) => same(a[k], b[k]));
  }
  return Object.is(a, b);
}

function show(v) {
  return JSON.stringify(v, (_, x) => (x instanceof Uint8Array ? `Uint8Array[${[...x]}]` : x));
}

function eq(got, want, what) {
  assert(same(got, want), `${what}: got ${show(got)}, want ${show(want)}`);
}

function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Failure(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// when resolves with the arguments of the first `event` of client for which pred holds.
function when(client, event, pred = () => true, ms = 5000) {
  let off;
  const p = new Promise((resolve) => {
    off = client.on(event, (...args) => {
      if (pred(...args)) resolve(args);
    });
  });
  return within(p, ms, `${event} event`).finally(() => off());
}

// open connects and waits for the first open.
async function open(opts = {}, url = WS) {
  const c = connect(url, { backoff: FAST, ...opts });
  cleanups.push(() => c.close());
  await when(c, 'state', (s) => s === 'open', 5000);
  return c;
}

// inbox collects what a topic's handler receives; probes (see flowing) are counted apart.
function inbox() {
  const items = [];
  let wake = null;
  const box = {
    items,
    probes: 0,
    onProbe: null,
    handler: (data, topic) => {
      if (data && typeof data === 'object' && Object.keys(data).length === 1 && '__probe' in data) {
        box.probes++;
        if (box.onProbe) box.onProbe();
        return;
      }
      items.push({ data, topic });
      if (wake) wake();
    },
    read: 0, // items handed out by next
    // next returns the oldest message not yet returned, waiting for it if need be.
    async next(ms = 5000) {
      if (box.read >= items.length) {
        await within(new Promise((resolve) => {
          wake = () => { if (box.read < items.length) resolve(); };
        }), ms, 'a message');
        wake = null;
      }
      return items[box.read++];
    },
  };
  return box;
}

// flowing publishes probes to topic t through pub until one reaches every box. A node acks a
// sub before its upstream interest is in place (broker.Router batches Acquire for up to
// BatchDelay), so a publish made right after the ack can miss the new subscriber; the cases
// test the client, so they wait out that window instead of racing it.
async function flowing(pub, t, ...boxes) {
  for (let i = 0; i < 50; i++) {
    const seen = boxes.map((b) => b.probes);
    const arrived = Promise.all(boxes.map((b, j) => new Promise((resolve) => {
      if (b.probes > seen[j]) return resolve();
      b.onProbe = () => { if (b.probes > seen[j]) resolve(); };
    })));
    await pub.publish(t, { __probe: i }, { ack: true });
    try {
      await within(arrived, 100, 'a probe');
      for (const b of boxes) b.onProbe = null;
      return i;
    } catch {
      // not yet: publish another
    }
  }
  throw new Failure(`no probe published to ${t} reached every subscriber in 50 tries`);
}

async function rejects(promise, code, what) {
  try {
    await promise;
  } catch (e) {
    assert(e instanceof SubsockError, `${what}: rejected with ${e}, want a SubsockError`);
    assert(e.code === code, `${what}: rejected with code ${e.code} (${e.msg}), want ${code}`);
    assert(typeof e.msg === 'string', `${what}: no msg`);
    return e;
  }
  throw new Failure(`${what}: resolved, want a rejection with ${code}`);
}

let seq = 0;
const topic = (name) => `test.${name}.${Date.now()}.${seq++}`;
const historyTopic = (name) => `test.h.${name}.${Date.now()}.${seq++}`;

// record collects what a history topic's handler receives, and the client's recover events.
function record(client, t) {
  const r = { offsets: [], data: [], recovers: [], wake: null };
  r.handler = (data, _topic, { offset }) => {
    r.offsets.push(offset);
    r.data.push(data);
    if (r.wake) r.wake();
  };
  client.on('recover', (ev) => {
    if (ev.topic === t) r.recovers.push(ev);
    if (r.wake) r.wake();
  });
  // until waits for pred(r) after each delivery or recover event.
  r.until = (pred, what, ms = 5000) => within(new Promise((resolve) => {
    r.wake = () => { if (pred(r)) resolve(); };
    r.wake();
  }), ms, what).finally(() => { r.wake = null; });
  return r;
}

// range returns [from, from+1, ..., to].
const range = (from, to) => Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);

// publishAll publishes each value to t with an ack, in order, and returns the acks' offsets
// and the epoch of the last.
async function publishAll(pub, t, values) {
  const offsets = [];
  let epoch = null;
  for (const v of values) {
    const ack = await pub.publish(t, v, { ack: true });
    offsets.push(ack.offset);
    epoch = ack.epoch;
  }
  return Object.assign(offsets, { epoch });
}

// kick closes the client's current socket from the page's side, as a lost connection would end.
function kick(tag) {
  const [ws] = socketsOf(tag);
  assert(ws, `no open socket tagged ${tag}`);
  ws.close(3000, 'kicked by the test');
}

// --- cases --------------------------------------------------------------------------------

test('validTopic follows the protocol topic rules', () => {
  const valid = ['a', 'prices.AAPL', 'a.b.c', 'x'.repeat(256), 'a*b.c>d', '~!@#$%^&()'];
  const invalid = ['', '.a', 'a.', 'a..b', 'a b', 'a.*', '>', 'a.>.b', 'x'.repeat(257), 'caf\u00e9', 'tab\t'];
  for (const t of valid) assert(validTopic(t) === null, `${show(t)} should be valid: ${validTopic(t)}`);
  for (const t of invalid) assert(typeof validTopic(t) === 'string', `${show(t)} should be invalid`);
});

test('reconnectDelay: full jitter, capped, 1001/1013/4013 back off, 4001 retries at once, a server wait is added', () => {
  const top = () => 1; // the top of the jitter window
  const b = { min: 100, max: 1000 };
  const table = [
    // [attempt, code, random, delay, next attempt]
    [0, CloseCode.ABNORMAL, top, 100, 1],
    [1, CloseCode.ABNORMAL, top, 200, 2],
    [3, CloseCode.ABNORMAL, top, 800, 4],
    [4, CloseCode.ABNORMAL, top, 1000, 5], // capped at max
    [60, CloseCode.ABNORMAL, top, 1000, 61],
    [0, CloseCode.ABNORMAL, () => 0, 0, 1],
    [0, CloseCode.ABNORMAL, () => 0.5, 50, 1],
    [0, CloseCode.GOING_AWAY, top, 200, 2],
    [0, CloseCode.TRY_AGAIN_LATER, top, 800, 4],
    [5, CloseCode.TRY_AGAIN_LATER, top, 1000, 6],
    [0, CloseCode.TOKEN_EXPIRED, top, 0, 1],
    [1, CloseCode.TOKEN_EXPIRED, top, 200, 2],
    [0, CloseCode.HEARTBEAT_TIMEOUT, top, 100, 1],
    [0, CloseCode.TRY_LATER, top, 800, 4],
    [0, CloseCode.TRY_LATER, top, 3800, 4, 3000], // retry in 3s, plus the jitter
    [0, CloseCode.TRY_LATER, () => 0, 3000, 4, 3000],
  ];
  for (const [attempt, code, random, delay, next, wait] of table) {
    const got = reconnectDelay({ attempt, code, wait, ...b }, random);
    eq(got, { delay, attempt: next }, `reconnectDelay(attempt ${attempt}, code ${code})`);
  }
});

test('json: subscribe, publish with ack, receive the same value', async () => {
  const sub = await open();
  const pub = await open();
  assert(sub.protocol === 'subsock.v1.json', `protocol ${sub.protocol}`);
  const t = topic('json');
  const box = inbox();
  await sub.subscribe(t, box.handler);
  await flowing(pub, t, box);
  const value = { s: 'h\u00e9llo "q" \\ \n', n: 42, f: 1.5, neg: -7, big: 2 ** 40, b: true, z: null, arr: [1, 'x', null, [false]], o: { k: { deep: [] } } };
  await pub.publish(t, value, { ack: true });
  const m = await box.next();
  eq(m.topic, t, 'topic');
  eq(m.data, value, 'data');
});

test('msgpack: negotiated, and a value with binary, ints and floats round trips', async () => {
  const sub = await open({ protocol: 'msgpack' });
  const pub = await open({ protocol: 'msgpack' });
  eq(sub.protocol, 'subsock.v1.msgpack', 'negotiated subprotocol');
  const t = topic('mp');
  const box = inbox();
  await sub.subscribe(t, box.handler);
  await flowing(pub, t, box);
  const value = { bin: new Uint8Array([0, 1, 2, 255]), n: 42, neg: -300000, big: 2 ** 40, f: 0.1, s: 'caf\u00e9', arr: [null, true, false, [1.25]], o: { k: 'v' }, empty: {} };
  await pub.publish(t, value, { ack: true });
  eq((await box.next()).data, value, 'data');
});

test('cross-codec: the server converts between JSON and MessagePack subscribers', async () => {
  const jsonSub = await open();
  const mpSub = await open({ protocol: 'msgpack' });
  const jsonPub = await open();
  const mpPub = await open({ protocol: 'msgpack' });
  const t = topic('cross');
  const jbox = inbox();
  const mbox = inbox();
  await jsonSub.subscribe(t, jbox.handler);
  await mpSub.subscribe(t, mbox.handler);
  await flowing(jsonPub, t, jbox, mbox);

  const v1 = { x: 1.5, n: 3, s: 'ok', l: [1, 2] };
  await jsonPub.publish(t, v1, { ack: true });
  eq((await jbox.next()).data, v1, 'json -> json');
  eq((await mbox.next()).data, v1, 'json -> msgpack');

  await mpPub.publish(t, { bin: new Uint8Array([1, 2, 3]), f: 2.5 }, { ack: true });
  eq((await mbox.next()).data, { bin: new Uint8Array([1, 2, 3]), f: 2.5 }, 'msgpack -> msgpack');
  eq((await jbox.next()).data, { bin: 'AQID', f: 2.5 }, 'msgpack -> json (binary as base64)');
});

test('ack and err: a publish with ack resolves, a refused one rejects with {code, msg}', async () => {
  for (const protocol of ['json', 'msgpack']) {
    const c = await open({ protocol });
    await c.publish(topic('ok'), { fine: true }, { ack: true });
    const e = await rejects(c.publish('secret.x', 1, { ack: true }), 'forbidden', `${protocol}: publish to secret.x`);
    assert(e.msg.includes('secret.x'), `${protocol}: msg ${show(e.msg)} does not name the topic`);
    await rejects(c.publish('a..b', 1, { ack: true }), 'invalid_topic', `${protocol}: publish to a..b`);
    // The connection is still good after the refusals.
    await c.publish(topic('after'), [], { ack: true });
  }
});

test('an err without an id reaches on("error")', async () => {
  const c = await open();
  const got = when(c, 'error', (e) => e.code === 'forbidden');
  await c.publish('secret.noack', 'x'); // no ack asked: the server's err carries no id
  const [e] = await got;
  assert(e instanceof SubsockError && e.msg.includes('secret.noack'), `error ${e}`);
  eq(c.state, 'open', 'state after the err');
});

test('a refused subscription rejects and is dropped, the others stay', async () => {
  const c = await open();
  const ok = topic('kept');
  await c.subscribe(ok, () => {});
  await rejects(c.subscribe('secret.sub', () => {}), 'forbidden', 'subscribe secret.sub');
  eq(c.topics(), [ok], 'topics held');
  await rejects(c.subscribe('a.>', () => {}), 'invalid_topic', 'subscribe to a wildcard');
});

test('unsubscribe stops delivery; subscribing again resumes it', async () => {
  const sub = await open();
  const pub = await open();
  const t = topic('unsub');
  const box = inbox();
  await sub.subscribe(t, box.handler);
  await flowing(pub, t, box);
  await pub.publish(t, 'one', { ack: true });
  await box.next();
  await sub.unsubscribe(t);
  eq(sub.topics(), [], 'topics after unsubscribe');
  await pub.publish(t, 'two', { ack: true });
  await sub.subscribe(t, box.handler);
  await flowing(pub, t, box);
  await pub.publish(t, 'three', { ack: true });
  await box.next();
  eq(box.items.map((m) => m.data), ['one', 'three'], 'received');
});

test('several handlers per topic; removing one keeps the other', async () => {
  const sub = await open();
  const t = topic('handlers');
  const a = inbox();
  const b = inbox();
  await sub.subscribe(t, a.handler);
  await sub.subscribe(t, b.handler); // already confirmed: resolves at once
  await flowing(sub, t, a, b);
  await sub.publish(t, 1, { ack: true });
  await a.next();
  await b.next();
  await sub.unsubscribe(t, a.handler);
  eq(sub.topics(), [t], 'topic still held');
  await sub.publish(t, 2, { ack: true });
  await b.next();
  eq(a.items.length, 1, 'messages to the removed handler');
});

test('a throwing handler does not stop delivery to the others', async () => {
  const sub = await open();
  const t = topic('throw');
  const reported = [];
  const onError = (ev) => {
    reported.push(ev.error);
    ev.preventDefault(); // expected: keep it out of the console
  };
  window.addEventListener('error', onError);
  try {
    const box = inbox();
    await sub.subscribe(t, (d) => { if (typeof d === 'string') throw new Error('handler bug'); });
    await sub.subscribe(t, box.handler);
    await flowing(sub, t, box);
    await sub.publish(t, 'a', { ack: true });
    await box.next();
    await sub.publish(t, 'b', { ack: true });
    await box.next();
    eq(reported.map((e) => e?.message), ['handler bug', 'handler bug'], 'reported errors');
  } finally {
    window.removeEventListener('error', onError);
  }
});

test('publishes made before the connection opens are sent once it does', async () => {
  const sub = await open();
  const t = topic('early');
  const box = inbox();
  await sub.subscribe(t, box.handler);
  await flowing(sub, t, box);
  const c = connect(WS, { backoff: FAST });
  cleanups.push(() => c.close());
  eq(c.state, null, 'state before the first dial');
  const acked = c.publish(t, 'early', { ack: true });
  const fire = c.publish(t, 'early-noack');
  await within(Promise.all([acked, fire]), 5000, 'the buffered publishes');
  await box.next();
  await box.next();
  eq(box.items.map((m) => m.data), ['early', 'early-noack'], 'received in order');
});

test('app-level pings keep a quiet connection open', async () => {
  const c = await open({ pingInterval: 100, pingTimeout: 400 });
  const states = [];
  c.on('state', (s) => states.push(s));
  await new Promise((resolve) => setTimeout(resolve, 1000)); // quiet on purpose: ~10 ping rounds
  eq(states, [], 'state changes while quiet');
  eq(c.state, 'open', 'state');
});

test('a silent server is detected (4000) and the client reconnects', async () => {
  assert(q.get('silent'), 'no silent server given');
  const c = connect(`ws://${q.get('silent')}/ws`, { backoff: FAST, pingInterval: 100, pingTimeout: 200 });
  cleanups.push(() => c.close());
  await when(c, 'state', (s) => s === 'open');
  const [, d] = await when(c, 'state', (s) => s === 'reconnecting', 3000);
  eq(d.code, CloseCode.HEARTBEAT_TIMEOUT, 'close code');
  await when(c, 'state', (s) => s === 'open', 3000); // it dials again
});

async function fetchToken(ttl, sub = 'browser') {
  const r = await fetch(`/token?ttl=${ttl}&sub=${encodeURIComponent(sub)}`);
  if (!r.ok) throw new Error(`GET /token: ${r.status}`);
  return r.text();
}

test('a fixed string token is sent as ?token=', async () => {
  assert(q.get('jwt'), 'no token node given');
  const c = await open({ token: await fetchToken(60) }, `ws://${q.get('jwt')}/ws`);
  await c.publish(topic('static'), 1, { ack: true });
});

test('a failing token function is reported and retried', async () => {
  assert(q.get('jwt'), 'no token node given');
  let calls = 0;
  const token = () => {
    if (++calls === 1) throw new Error('token backend down');
    return fetchToken(60);
  };
  const c = connect(`ws://${q.get('jwt')}/ws`, { backoff: FAST, token });
  cleanups.push(() => c.close());
  const errored = when(c, 'error', (e) => e.code === 'token' && e.msg.includes('token backend down'));
  const opened = when(c, 'state', (s) => s === 'open');
  await errored;
  await opened;
  eq(calls, 2, 'token calls');
});

test('refreshToken() hands a fresh token over in band: no 4001 at the old expiry', async () => {
  assert(q.get('jwt'), 'no token node given');
  const ttls = [2, 60];
  const c = await open({ token: () => fetchToken(ttls.shift() ?? 60) }, `ws://${q.get('jwt')}/ws`);
  await c.refreshToken(); // resolves on the server's ack
  eq(ttls, [], 'tokens fetched');
  const states = [];
  c.on('state', (s) => states.push(s));
  // Past the first token's expiry, with the node checking every 500 ms.
  await new Promise((resolve) => setTimeout(resolve, 3000));
  eq(states, [], 'state changes after the refresh');
  await c.publish(topic('refreshed'), 1, { ack: true });
});

test('token expiry (4001): a fresh token, an immediate reconnect, subscriptions restored', async () => {
  assert(q.get('jwt'), 'no token node given');
  const calls = [];
  const token = () => {
    // The first token lives two seconds, later ones a minute.
    const ttl = calls.length === 0 ? 2 : 60;
    calls.push(ttl);
    return fetchToken(ttl);
  };
  const c = await open({ token }, `ws://${q.get('jwt')}/ws`);
  const t = topic('jwt');
  const box = inbox();
  await c.subscribe(t, box.handler);
  const [, d] = await when(c, 'state', (s) => s === 'reconnecting', 6000);
  eq(d.code, CloseCode.TOKEN_EXPIRED, 'close code');
  eq(d.delay, 0, 'delay before the first retry');
  await when(c, 'subscribed', (topics) => topics.includes(t), 5000);
  eq(calls, [2, 60], 'token fetches');
  await flowing(c, t, box);
  await c.publish(t, 'after refresh', { ack: true });
  eq((await box.next()).data, 'after refresh', 'message after the reconnect');
  await rejects(c.publish('secret.jwt', 1, { ack: true }), 'forbidden', 'publish outside the token claims');
});

test('no token: the node refuses it with 4001; the client reports it, rejects what waits and closes', async () => {
  assert(q.get('jwt'), 'no token node given');
  const c = connect(`ws://${q.get('jwt')}/ws`, { backoff: FAST });
  cleanups.push(() => c.close());
  const states = [];
  c.on('state', (s, d) => states.push([s, d.code]));
  const errored = when(c, 'error', (e) => e.code === 'unauthorized');
  const closed = when(c, 'state', (s) => s === 'closed');
  const sub = c.subscribe(topic('refused'), () => {});
  const pub = c.publish(topic('refused'), 1);
  const [e] = await errored;
  eq([e.closeCode, e.reason.length > 0, e.msg === e.reason], [CloseCode.TOKEN_EXPIRED, true, true], 'error event: close code and reason');
  await closed;
  eq(states, [['connecting', undefined], ['closed', CloseCode.TOKEN_EXPIRED]], 'states: never open, no retry');
  eq((await rejects(sub, 'unauthorized', 'the pending subscribe')).closeCode, CloseCode.TOKEN_EXPIRED, 'close code of the rejection');
  await rejects(pub, 'unauthorized', 'the publish waiting for a connection');
  eq((await rejects(c.publish(topic('refused'), 2), 'unauthorized', 'a publish after')).reason, e.reason, 'reason of a later rejection');
});

test('a refused token: the token function is asked again and its new token connects', async () => {
  assert(q.get('jwt'), 'no token node given');
  let calls = 0;
  const token = () => (++calls === 1 ? 'not-a-token' : fetchToken(60));
  const c = connect(`ws://${q.get('jwt')}/ws`, { backoff: FAST, token });
  cleanups.push(() => c.close());
  const t = topic('second');
  const errored = when(c, 'error', (e) => e.code === 'unauthorized' && e.closeCode === CloseCode.TOKEN_EXPIRED);
  const confirmed = when(c, 'subscribed', (topics) => topics.includes(t));
  const sub = c.subscribe(t, () => {});
  await errored;
  await rejects(sub, 'unauthorized', 'the subscribe pending at the refusal');
  await confirmed; // the topic stayed held
  eq([c.state, calls], ['open', 2], 'state and token calls');
});

test('the socket URL asks for refusals as close codes and keeps its own query', async () => {
  const c = await open({}, `${WS}?tag=query&x=1`);
  const [ws] = socketsOf('query');
  assert(ws, 'no socket tagged query');
  const u = new URL(ws.url);
  eq([u.searchParams.get('refuse'), u.searchParams.get('x')], ['close', '1'], 'query');
  eq(c.state, 'open', 'state');
});

test('close(): final state, pending work rejected with closed, no reconnect', async () => {
  const c = await open();
  const t = topic('close');
  await c.subscribe(t, () => {});
  const states = [];
  c.on('state', (s) => states.push(s));
  c.close();
  eq(states, ['closed'], 'states after close');
  eq(c.state, 'closed', 'state');
  await rejects(c.publish(t, 1), 'closed', 'publish after close');
  await rejects(c.subscribe(topic('x'), () => {}), 'closed', 'subscribe after close');
  const pending = connect(WS, { backoff: FAST });
  const p = pending.publish(t, 'never', { ack: true });
  const s = pending.subscribe(topic('never'), () => {});
  pending.close();
  await rejects(p, 'closed', 'buffered publish at close');
  await rejects(s, 'closed', 'unconfirmed subscription at close');
});

test('history: publish with ack resolves with the offset; topics without history have none', async () => {
  const c = await open();
  const t = historyTopic('offsets');
  const first = await c.publish(t, 'a', { ack: true });
  assert(Number.isSafeInteger(first.offset) && typeof first.epoch === 'string' && first.epoch !== '', `ack ${show(first)}`);
  eq(await c.publish(t, 'b', { ack: true }), { offset: first.offset + 1, epoch: first.epoch }, 'second ack');
  eq(await c.publish(topic('plain'), 'c', { ack: true }), undefined, 'ack on a topic without history');
  const plain = topic('plain');
  const box = inbox();
  let meta = null;
  await c.subscribe(plain, (d, tp, m) => { meta = m; box.handler(d, tp); });
  await flowing(c, plain, box);
  eq(meta, { offset: undefined, epoch: undefined }, 'metadata of a message without history');
  eq(c.position(plain), null, 'position of a topic without history');
});

test('history: subscribe {last: k} replays exactly the last k, in order, then live', async () => {
  for (const protocol of ['json', 'msgpack']) {
    const pub = await open({ protocol });
    const t = historyTopic('last');
    const offsets = await publishAll(pub, t, range(1, 30).map((i) => ({ i })));
    const sub = await open({ protocol });
    const r = record(sub, t);
    await sub.subscribe(t, r.handler, { last: 10 });
    eq(r.offsets, offsets.slice(20), `${protocol}: offsets replayed before the subscribe resolved`);
    eq(r.data, range(21, 30).map((i) => ({ i })), `${protocol}: data replayed`);
    eq(sub.position(t), { offset: offsets[29], epoch: offsets.epoch }, `${protocol}: position after the replay`);
    await pub.publish(t, { i: 31 }, { ack: true });
    await r.until((x) => x.offsets.length === 11, `${protocol}: the live message`);
    eq(r.offsets, offsets.slice(20).concat(offsets[29] + 1), `${protocol}: offsets`);
    eq(r.recovers, [], `${protocol}: recover events`);
    // More than the stream holds: everything there is.
    const all = record(sub, t);
    const t2 = historyTopic('lastall');
    await publishAll(pub, t2, [1, 2, 3]);
    await sub.subscribe(t2, all.handler, { last: 50 });
    eq(all.data, [1, 2, 3], `${protocol}: last 50 of 3`);
  }
});

test('history: connections cut while a publisher keeps publishing: every offset once, in order', async () => {
  const t = historyTopic('cut');
  const sub = await open({ protocol: 'msgpack' }, `${WS}?tag=cut-sub`);
  const r = record(sub, t);
  await sub.subscribe(t, r.handler);
  const pub = await open();
  let last = 0;
  let running = true;
  const publishing = (async () => {
    for (let i = 1; running && i <= 5000; i++) last = (await pub.publish(t, i, { ack: true })).offset;
  })();
  try {
    for (let cut = 1; cut <= 3; cut++) {
      await r.until((x) => x.offsets.length >= cut * 40, `40 more messages before cut ${cut}`);
      kick('cut-sub');
      await r.until((x) => x.recovers.length === cut, `the recovery after cut ${cut}`);
    }
  } finally {
    running = false;
    await publishing;
  }
  await r.until((x) => x.offsets.at(-1) === last, `offset ${last}`);
  // A fresh topic: publication i has offset i.
  eq(r.offsets, range(1, last), 'offsets received');
  eq(r.data, range(1, last), 'data received');
  eq(r.recovers.map((e) => e.recovered), [true, true, true], 'recovered');
});

test('history: a gap in the live stream is recovered by resubscribing; duplicates are dropped', async () => {
  const t = historyTopic('gap');
  const sub = await open({}, `${WS}?tag=gap-sub`);
  const r = record(sub, t);
  await sub.subscribe(t, r.handler);
  const pub = await open();
  const base = (await pub.publish(t, 0, { ack: true })).offset;
  await r.until((x) => x.offsets.length === 1, 'the first message');
  // The socket loses base+3 once, and sees base+2 twice.
  let lost = false;
  tap((frame) => {
    const m = JSON.parse(frame);
    if (m.op !== 'msg' || m.topic !== t) return [frame];
    if (m.offset === base + 3 && !lost) {
      lost = true;
      return [];
    }
    return m.offset === base + 2 ? [frame, frame] : [frame];
  });
  const offsets = await publishAll(pub, t, range(1, 10));
  await r.until((x) => x.offsets.at(-1) === offsets.at(-1), `offset ${offsets.at(-1)}`);
  assert(lost, 'nothing was lost');
  eq(r.offsets, range(base, base + 10), 'offsets received');
  eq(r.data, range(0, 10), 'data received');
  eq(r.recovers.map((e) => [e.recovered, e.offset >= base + 3]), [[true, true]], 'recover events');
});

test('history: a message from a new epoch is an unrecoverable recovery and resets the position', async () => {
  const t = historyTopic('epoch');
  const sub = await open();
  const r = record(sub, t);
  await sub.subscribe(t, r.handler);
  const pub = await open();
  const { offset, epoch } = await pub.publish(t, 'before', { ack: true });
  await r.until((x) => x.offsets.length === 1, 'the first message');
  // The stream "loses its past" between two publications: the next one comes in a new epoch.
  tap((frame) => {
    const m = JSON.parse(frame);
    if (m.op !== 'msg' || m.topic !== t || m.offset !== offset + 1) return [frame];
    return [JSON.stringify({ ...m, offset: 1, epoch: 'other' })];
  });
  await pub.publish(t, 'after', { ack: true });
  await r.until((x) => x.recovers.length === 1 && x.offsets.length === 2, 'the recover event and the message');
  eq(r.recovers, [{ topic: t, recovered: false, offset: 1, epoch: 'other' }], 'recover event');
  eq(r.offsets, [offset, 1], 'offsets delivered');
  eq(sub.position(t), { offset: 1, epoch: 'other' }, 'position');
  assert(epoch !== 'other', 'the real epoch is "other"');
});

test('history: subscribe {since} resumes from a kept position, or says it cannot', async () => {
  const pub = await open();
  const t = historyTopic('since');
  const offsets = await publishAll(pub, t, range(1, 6));
  const { epoch } = offsets;
  const sub = await open();
  const r = record(sub, t);
  await sub.subscribe(t, r.handler, { since: { offset: offsets[2], epoch } });
  eq(r.data, [4, 5, 6], 'replayed after the position');
  eq(r.recovers, [{ topic: t, recovered: true, offset: offsets[5], epoch }], 'recover event');
  const t2 = historyTopic('since-lost');
  await publishAll(pub, t2, [1]);
  const r2 = record(sub, t2);
  await sub.subscribe(t2, r2.handler, { since: { offset: 1, epoch: 'gone' } });
  eq(r2.data, [], 'replayed from another epoch');
  eq(r2.recovers.map((e) => e.recovered), [false], 'recovered');
  await rejects(sub.subscribe(historyTopic('x'), () => {}, { since: { offset: 1 } }), 'bad_request', 'since without an epoch');
  await rejects(sub.subscribe(historyTopic('x'), () => {}, { last: -1 }), 'bad_request', 'negative last');
});

// --- Server-Sent Events (sse_test.go restarts nodes under them) -----------------------------

// stream opens sse('/sse', opts) and waits for the node's 200. Its recorder has messages
// ({data, topic, offset, epoch}), lost events and until(pred, what).
async function stream(opts) {
  const s = sse('/sse', { backoff: FAST, ...opts });
  cleanups.push(() => s.close());
  const r = { messages: [], lost: [], wake: null };
  s.on('message', (data, t, meta) => {
    r.messages.push({ data, topic: t, ...meta });
    if (r.wake) r.wake();
  });
  s.on('lost', (ev) => {
    r.lost.push(ev);
    if (r.wake) r.wake();
  });
  r.until = (pred, what, ms = 5000) => within(new Promise((resolve) => {
    r.wake = () => { if (pred(r)) resolve(); };
    r.wake();
  }), ms, what).finally(() => { r.wake = null; });
  await when(s, 'subscribed');
  return { s, r };
}

test('sse: bad topics, last and since throw a SubsockError', () => {
  const throws = (opts, code, what) => {
    try {
      sse('/sse', opts).close();
    } catch (e) {
      assert(e instanceof SubsockError && e.code === code, `${what}: threw ${e}, want ${code}`);
      return;
    }
    throw new Failure(`${what}: no error`);
  };
  throws({}, 'bad_request', 'no topics');
  throws({ topics: ['a..b'] }, 'invalid_topic', 'an invalid topic');
  throws({ topics: ['a,b.c'] }, 'invalid_topic', 'a topic with a comma');
  throws({ topics: ['a'], last: -1 }, 'bad_request', 'negative last');
  throws({ topics: ['a'], since: { b: { offset: 1, epoch: 'e' } } }, 'bad_request', 'since of another topic');
  throws({ topics: ['a'], since: { a: { offset: 1 } } }, 'bad_request', 'since without an epoch');
  const s = sse('/sse', { topics: 'x.a,x.b' });
  eq(s.topics(), ['x.a', 'x.b'], 'topics from a string');
  s.close();
  eq(s.state, 'closed', 'state after close');
});

test('sse: messages of a WebSocket publisher, plain and with history, in one stream', async () => {
  const pub = await open();
  const plain = topic('sse');
  const hist = historyTopic('sse');
  const { s, r } = await stream({ topics: [plain, hist] });
  const { offset, epoch } = await pub.publish(hist, { n: 1 }, { ack: true });
  await pub.publish(plain, 'p', { ack: true });
  await r.until((x) => x.messages.length === 2, 'two messages');
  const byTopic = Object.fromEntries(r.messages.map((m) => [m.topic, m]));
  eq(byTopic[hist], { data: { n: 1 }, topic: hist, offset, epoch }, 'history message');
  eq(byTopic[plain], { data: 'p', topic: plain, offset: undefined, epoch: undefined }, 'plain message');
  eq(s.position(hist), { offset, epoch }, 'position');
  eq(s.position(plain), null, 'position without history');
});

test('sse: last replays, since resumes, a gone position is lost, each offset once', async () => {
  const pub = await open();
  const t = historyTopic('sse-since');
  const offsets = await publishAll(pub, t, range(1, 6));
  const { epoch } = offsets;
  const last = await stream({ topics: [t], last: 2 });
  await last.r.until((x) => x.messages.length === 2, 'the last 2');
  eq(last.r.messages.map((m) => m.data), [5, 6], 'last 2');
  const since = await stream({ topics: [t], since: { [t]: { offset: offsets[2], epoch } } });
  await since.r.until((x) => x.messages.length === 3, 'the 3 after the position');
  eq(since.r.messages.map((m) => m.offset), offsets.slice(3), 'offsets after since');
  const gone = await stream({ topics: [t], since: { [t]: { offset: 2, epoch: 'gone' } } });
  await gone.r.until((x) => x.lost.length === 1, 'the lost event');
  eq(gone.r.lost, [{ topic: t, offset: offsets[5], epoch }], 'lost event');
  await pub.publish(t, 7, { ack: true });
  for (const x of [last, since, gone]) await x.r.until((y) => y.messages.at(-1)?.data === 7, 'the live message');
  eq(gone.r.messages.map((m) => m.data), [7], 'after the lost event: live only');
  eq(since.r.messages.map((m) => m.data), [4, 5, 6, 7], 'since, then live');
});

// --- identity, presence, echo and server actions ------------------------------------------
// The token node has presence and join-leave events on test.p.>, and the server API, which
// this page reaches through /admin/ on its own node (see client_test.go).

const presenceTopic = (name) => `test.p.${name}.${Date.now()}.${seq++}`;

// userClient opens a client of the token node as user; tag names its sockets for kick().
function userClient(user, tag = '') {
  assert(q.get('jwt'), 'no token node given');
  return open({ token: () => fetchToken(60, user) }, `ws://${q.get('jwt')}/ws${tag ? `?tag=${tag}` : ''}`);
}

// admin asks the token node's server API for action (disconnect, unsubscribe) with body.
async function admin(action, body) {
  const r = await fetch(`/admin/${action}`, { method: 'POST', body: JSON.stringify(body) });
  assert(r.status === 202, `POST /api/${action}: ${r.status} ${await r.text()}`);
}

// eventually waits for pred() to hold, checking every 20 ms.
function eventually(pred, what, ms = 5000) {
  return within(new Promise((resolve) => {
    const check = () => (pred() ? resolve() : setTimeout(check, 20));
    check();
  }), ms, what);
}

// members records a client's join and leave events.
function members(client) {
  const ev = [];
  client.on('join', (e) => ev.push(['join', e]));
  client.on('leave', (e) => ev.push(['leave', e]));
  return ev;
}

test('info(): the connection\'s id, its user and its node', async () => {
  const anon = await open();
  const a = await anon.info();
  assert(a.node !== '' && a.client.startsWith(`${a.node}-`) && a.user === '', `anonymous info ${show(a)}`);
  const b = await (await open()).info();
  assert(b.client !== a.client && b.node === a.node, `a second connection's info ${show(b)} beside ${show(a)}`);
  const user = `info-${seq++}`;
  eq((await (await userClient(user)).info()).user, user, 'user of a token');
});

test('presence: members and counts; join and leave events of the others only', async () => {
  const t = presenceTopic('room');
  const ann = await userClient('ann');
  const annEv = members(ann);
  await ann.subscribe(t, () => {});
  const ben = await userClient('ben');
  const benEv = members(ben);
  await ben.subscribe(t, () => {});
  const [annInfo, benInfo] = [await ann.info(), await ben.info()];
  await eventually(() => annEv.length === 1, 'ben\'s join');
  eq(annEv, [['join', { topic: t, client: benInfo.client, user: 'ben' }]], 'ann\'s events');
  const both = [{ client: annInfo.client, user: 'ann' }, { client: benInfo.client, user: 'ben' }];
  eq(await ben.presence(t), both, 'presence');
  eq(await ann.presenceStats(t), { clients: 2, users: 2 }, 'presence stats');
  eq(await ann.presence(presenceTopic('empty')), [], 'presence of an empty topic');
  await rejects(ann.presence('test.nopresence.x'), 'not_enabled', 'presence of a topic without it');
  await rejects(ann.presenceStats('secret.x'), 'forbidden', 'presence stats of a forbidden topic');
  await rejects(ann.presence('a.>'), 'invalid_topic', 'presence of a pattern');
  ben.close();
  await eventually(() => annEv.length === 2, 'ben\'s leave');
  eq(annEv[1], ['leave', { topic: t, client: benInfo.client, user: 'ben' }], 'ann\'s leave event');
  eq(benEv, [], 'ben\'s events (ann was there before him; his own are not told)');
  eq(await ann.presence(t), both.slice(0, 1), 'presence after ben left');
  const offline = connect(WS, { backoff: FAST });
  cleanups.push(() => offline.close());
  await rejects(offline.info(), 'unavailable', 'info before the first open');
});

test('publish {echo: false}: every subscriber but the publisher; on a history topic no gap', async () => {
  const t = historyTopic('echo');
  const self = await open();
  // The other client speaks MessagePack: its binary frames pass the tap below untouched.
  const other = await open({ protocol: 'msgpack' });
  const mine = record(self, t);
  const theirs = record(other, t);
  await self.subscribe(t, mine.handler);
  await other.subscribe(t, theirs.handler);
  const own = await self.publish(t, 'own 1', { ack: true, echo: false });
  assert(Number.isSafeInteger(own.offset), `ack of a publish without echo: ${show(own)}`);
  await other.publish(t, 'theirs 1', { ack: true });
  await self.publish(t, 'own 2', { echo: false }); // no ack asked: the client asks for itself
  await other.publish(t, 'theirs 2', { ack: true });
  await theirs.until((x) => x.data.length === 4, 'all four at the other client');
  // own 2 was not acked before theirs 2 left: the node may have taken them in either order.
  eq([...theirs.data].sort(), ['own 1', 'own 2', 'theirs 1', 'theirs 2'], 'the other client got');
  await mine.until((x) => x.data.length === 2, 'the other client\'s two');
  eq(mine.data, ['theirs 1', 'theirs 2'], 'the publisher got');
  await eventually(() => same(self.position(t), other.position(t)), `the publisher's position ${show(self.position(t))} at the other's ${show(other.position(t))}`);
  // The ack of an own publish comes after a message published behind it: that message waits
  // for the ack, then is delivered, with no recovery.
  let stashed = null;
  let released = false;
  let ackStashed;
  const stashing = new Promise((resolve) => { ackStashed = resolve; });
  tap((frame) => {
    const m = JSON.parse(frame);
    if (!stashed && m.op === 'ack' && m.offset != null) {
      stashed = frame;
      ackStashed();
      return [];
    }
    if (stashed && !released && m.op === 'msg' && m.topic === t) {
      released = true;
      return [frame, stashed];
    }
    return [frame];
  });
  const acked = self.publish(t, 'own 3', { ack: true, echo: false });
  await within(stashing, 5000, 'the ack of own 3');
  await other.publish(t, 'theirs 3', { ack: true });
  const { offset } = await within(acked, 5000, 'own 3 acked');
  await mine.until((x) => x.data.length === 3, 'theirs 3');
  assert(released, 'the ack was not held back');
  eq(mine.offsets.at(-1), offset + 1, 'offset of theirs 3');
  // A recovery's event would come with its ack, before a message published after it.
  await other.publish(t, 'theirs 4', { ack: true });
  await mine.until((x) => x.data.length === 4, 'theirs 4');
  eq(mine.data, ['theirs 1', 'theirs 2', 'theirs 3', 'theirs 4'], 'the publisher got');
  eq(mine.recovers, [], 'recover events');
  // Plain topics too.
  const p = topic('echo');
  const box = inbox();
  await self.subscribe(p, box.handler);
  await flowing(self, p, box);
  await self.publish(p, 'not back', { ack: true, echo: false });
  await self.publish(p, 'back', { ack: true });
  eq((await box.next()).data, 'back', 'first message back on a plain topic');
});

test('unsubscribed: a subscription the server removes is dropped, not resubscribed', async () => {
  const user = `uns-${Date.now()}-${seq++}`;
  const c = await userClient(user, 'uns');
  const gone = topic('gone');
  const kept = topic('kept');
  await c.subscribe(gone, () => {});
  await c.subscribe(kept, () => {});
  const told = when(c, 'unsubscribed');
  await admin('unsubscribe', { user, topic: gone });
  eq((await told)[0], { topic: gone }, 'unsubscribed event');
  eq(c.topics(), [kept], 'topics held');
  const again = when(c, 'subscribed');
  kick('uns');
  eq((await again)[0], [kept], 'topics resubscribed after a reconnect');
});

test('disconnected (4003): no reconnect; the client is closed', async () => {
  const user = `dis-${Date.now()}-${seq++}`;
  const c = await userClient(user);
  const t = topic('dis');
  await c.subscribe(t, () => {});
  const states = [];
  c.on('state', (s, d) => states.push([s, d.code]));
  const told = when(c, 'disconnected');
  await admin('disconnect', { user });
  const [d] = await told;
  eq(d, { code: CloseCode.DISCONNECTED, reason: 'disconnected by server' }, 'disconnected event');
  eq(states, [['closed', CloseCode.DISCONNECTED]], 'states');
  await rejects(c.publish(t, 1), 'disconnected', 'publish after the disconnect');
  await rejects(c.subscribe(topic('x'), () => {}), 'disconnected', 'subscribe after the disconnect');
});

test('sse: join, leave and unsubscribed events; a disconnect ends the stream', async () => {
  assert(q.get('jwt'), 'no token node given');
  const user = `sse-${Date.now()}-${seq++}`;
  const room = presenceTopic('sse');
  const other = presenceTopic('sse-kept');
  const s = sse(`http://${q.get('jwt')}/sse`, { topics: [room, other], token: () => fetchToken(60, user), backoff: FAST });
  cleanups.push(() => s.close());
  const ev = members(s);
  await when(s, 'subscribed');
  const ws = await userClient('ws-member');
  const wsInfo = await ws.info();
  await ws.subscribe(room, () => {});
  await eventually(() => ev.length === 1, 'the join');
  await ws.unsubscribe(room);
  await eventually(() => ev.length === 2, 'the leave');
  eq(ev, [['join', { topic: room, client: wsInfo.client, user: 'ws-member' }], ['leave', { topic: room, client: wsInfo.client, user: 'ws-member' }]], 'events');
  const told = when(s, 'unsubscribed');
  await admin('unsubscribe', { user, topic: room });
  eq((await told)[0], { topic: room }, 'unsubscribed event');
  eq(s.topics(), [other], 'topics');
  const states = [];
  s.on('state', (st) => states.push(st));
  const down = when(s, 'disconnected');
  await admin('disconnect', { user });
  eq((await down)[0], { reason: 'disconnected by server' }, 'disconnected event');
  eq(states, ['closed'], 'states');
});

// --- runner -------------------------------------------------------------------------------

async function run() {
  window.__cases = cases.length;
  const results = [];
  const list = document.getElementById('results');
  const only = q.get('only');
  for (const c of cases) {
    if (only && !c.name.includes(only)) continue;
    const start = performance.now();
    let err = null;
    try {
      await within(Promise.resolve().then(c.fn), 20000, 'the case to finish');
    } catch (e) {
      err = e instanceof Failure ? e.message : String(e?.stack ?? e);
    }
    for (const f of cleanups.splice(0)) f();
    tap(null);
    const r = { name: c.name, ok: err === null, err: err ?? '', ms: Math.round(performance.now() - start) };
    results.push(r);
    const li = document.createElement('li');
    li.textContent = `${r.ok ? 'ok' : 'FAIL'} ${r.name} (${r.ms} ms) ${r.err}`;
    list.append(li);
  }
  window.__results = results;
}

run();
