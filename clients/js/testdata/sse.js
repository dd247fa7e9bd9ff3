// Steps of sse_test.go, which publishes with POST /publish and restarts nodes between them:
// the page keeps its streams across steps, each named by the Go test. Every step resolves
// with what the Go test checks, or rejects with what went wrong.
import { sse } from '/js/subsock.js';

const FAST = { min: 50, max: 500 };

// Every EventSource the page makes is counted: the browser's own reconnect makes none, a
// stream that reopens itself makes one.
const Native = globalThis.EventSource;
let made = 0;
globalThis.EventSource = class extends Native {
  constructor(...args) {
    super(...args);
    made++;
  }
};

function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// recorder keeps what a stream got; until waits for pred after each thing that happens.
function recorder() {
  const r = { messages: [], lost: [], errors: [], states: [], opens: 0, wake: () => {} };
  r.until = (pred, what, ms) => within(new Promise((resolve) => {
    r.wake = () => { if (pred(r)) resolve(); };
    r.wake();
  }), ms, what).finally(() => { r.wake = () => {}; });
  return r;
}

const streams = new Map(); // name -> {stream, r} or {es, r}

function get(name) {
  const s = streams.get(name);
  if (!s) throw new Error(`no stream ${name}`);
  return s;
}

const snapshot = ({ r, stream, es }) => ({
  messages: r.messages,
  lost: r.lost,
  errors: r.errors,
  states: r.states,
  opens: r.opens,
  readyState: es ? es.readyState : undefined,
  made,
  positions: stream ? Object.fromEntries(stream.topics().map((t) => [t, stream.position(t)])) : undefined,
});

window.steps = {
  // open starts sse(url, opts) as name and waits for the node's 200 ('subscribed'), or for
  // the first error when want is 'error'.
  async open(name, url, opts, want = 'subscribed') {
    const stream = sse(url, { backoff: FAST, ...opts });
    const r = recorder();
    streams.set(name, { stream, r });
    stream.on('message', (data, topic, { offset, epoch }) => {
      r.messages.push({ data, topic, offset: offset ?? null, epoch: epoch ?? null });
      r.wake();
    });
    stream.on('lost', (ev) => { r.lost.push(ev); r.wake(); });
    stream.on('error', (e) => { r.errors.push(`${e.code}: ${e.msg}`); r.wake(); });
    stream.on('subscribed', () => { r.opens++; r.wake(); });
    stream.on('state', (s, d) => { r.states.push(d.reason ? `${s} (${d.reason})` : s); });
    await r.until((x) => (want === 'error' ? x.errors.length > 0 : x.opens > 0), `${name}: ${want}`, 10000);
    return snapshot(get(name));
  },

  // raw starts a bare EventSource as name, to show what the browser itself does.
  async raw(name, url, want = 'open') {
    const es = new EventSource(url);
    const r = recorder();
    streams.set(name, { es, r });
    es.onopen = () => { r.opens++; r.wake(); };
    es.onmessage = (ev) => {
      const m = JSON.parse(ev.data);
      r.messages.push({ data: m.data, topic: m.topic, offset: m.offset ?? null, id: ev.lastEventId });
      r.wake();
    };
    es.addEventListener('lost', (ev) => { r.lost.push(JSON.parse(ev.data)); r.wake(); });
    es.onerror = () => { r.errors.push(`error, readyState ${es.readyState}`); r.wake(); };
    await r.until((x) => (want === 'error' ? x.errors.length > 0 : x.opens > 0), `${name}: ${want}`, 10000);
    return snapshot(get(name));
  },

  // until waits for n messages on name.
  async until(name, n, ms = 15000) {
    const s = get(name);
    await s.r.until((x) => x.messages.length >= n, `${n} messages on ${name} (${s.r.messages.length} so far)`, ms);
    return snapshot(s);
  },

  // read returns what name got so far.
  read(name) {
    return snapshot(get(name));
  },

  close(name) {
    const s = get(name);
    if (s.stream) s.stream.close();
    else s.es.close();
    return snapshot(s);
  },
};
window.stepsReady = true;
