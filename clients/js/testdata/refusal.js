// Steps of refusal_test.go, which counts the attempts on the nodes and holds or frees their
// connection slots between them. Every client the page opens subscribes one topic at once, so
// the subscribe() outcome of a refused client is seen. Every step resolves with what the Go
// test checks, or rejects with what went wrong.
import { connect } from '/js/subsock.js';

const FAST = { min: 50, max: 500 };

function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const clients = new Map(); // name -> {c, r}

// recorder keeps what a client did; until waits for pred after each thing that happens.
function recorder() {
  const r = { states: [], errors: [], sub: null, subscribed: 0, tokens: 0, wake: () => {} };
  r.until = (pred, what, ms) => within(new Promise((resolve) => {
    r.wake = () => { if (pred(r)) resolve(); };
    r.wake();
  }), ms, what).finally(() => { r.wake = () => {}; });
  return r;
}

function get(name) {
  const s = clients.get(name);
  if (!s) throw new Error(`no client ${name}`);
  return s;
}

const snapshot = ({ c, r }) => ({
  state: c.state,
  states: r.states,
  errors: r.errors,
  sub: r.sub,
  subscribed: r.subscribed,
  tokens: r.tokens,
});

// tokenOf turns the Go test's description into the token option: {fixed: s} a string,
// {fn: [a, b, ...]} a function that hands them out in turn and then the last forever,
// {mint: true} a function that gives a new token at every call; null none.
function tokenOf(spec, r) {
  if (!spec) return undefined;
  if ('fixed' in spec) return spec.fixed;
  if (spec.mint) return () => `minted-${++r.tokens}`;
  return () => spec.fn[Math.min(r.tokens++, spec.fn.length - 1)];
}

window.steps = {
  // open connects name to url with the token spec and subscribes topic, then waits for the
  // first refusal (the 'error' event), or for the subscription when want is 'subscribed'.
  async open(name, url, token, topic, want = 'error') {
    const r = recorder();
    const c = connect(url, { backoff: FAST, token: tokenOf(token, r) });
    clients.set(name, { c, r });
    c.on('state', (s, d) => { r.states.push({ state: s, code: d?.code ?? 0, delay: d?.delay ?? 0, at: Date.now() }); r.wake(); });
    c.on('error', (e) => { r.errors.push({ code: e.code, closeCode: e.closeCode ?? 0, reason: e.reason ?? '', at: Date.now() }); r.wake(); });
    c.on('subscribed', () => { r.subscribed++; r.wake(); });
    c.subscribe(topic, () => {}).then(
      () => { r.sub = { ok: true }; r.wake(); },
      (e) => { r.sub = { ok: false, code: e.code, closeCode: e.closeCode ?? 0, reason: e.reason ?? '' }; r.wake(); },
    );
    await r.until((x) => (want === 'error' ? x.errors.length > 0 && x.sub !== null : x.subscribed > 0), `${name}: ${want}`, 10000);
    return snapshot(get(name));
  },

  // until waits for name's state to be state.
  async until(name, state, ms = 10000) {
    const s = get(name);
    await s.r.until(() => s.c.state === state, `${name}: state ${state} (now ${s.c.state})`, ms);
    return snapshot(s);
  },

  // subscribed waits for name's next confirmed subscription.
  async subscribed(name, ms = 10000) {
    const s = get(name);
    const n = s.r.subscribed;
    await s.r.until((x) => x.subscribed > n, `${name}: subscribed`, ms);
    return snapshot(s);
  },

  read(name) {
    return snapshot(get(name));
  },

  close(name) {
    const s = get(name);
    s.c.close();
    return snapshot(s);
  },
};
window.stepsReady = true;
