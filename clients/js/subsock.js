// subsock.js — the browser client for the subsock wire protocol v1 (docs/protocol.md).
//
// An ES module with no build step. MessagePack support (vendor/msgpack, @msgpack/msgpack) is
// imported lazily, only by connections that ask for it, so JSON pages never download it.
//
//   import { connect } from '/js/subsock.js';
//   const c = connect('/ws', { token: () => fetch('/token').then(r => r.text()) });
//   c.on('state', (state, detail) => console.log(state, detail));
//   await c.subscribe('prices.ACME', (data, topic) => console.log(topic, data));
//   await c.publish('chat.lobby', { text: 'hi' }, { ack: true });
//
// On a topic with history (a node started with -history) every message has an offset: the
// client keeps each topic's position, resubscribes with it after every reconnect so nothing
// is lost or seen twice, and reports each recovery with on('recover', fn).
//
//   c.on('recover', ({ topic, recovered }) => { if (!recovered) reload(topic); });
//   await c.subscribe('chat.lobby', (data, topic, { offset }) => show(offset, data), { last: 50 });
//
// On a topic with presence (-presence, -join-leave) the client can ask who is there and hear
// the others come and go:
//
//   c.on('join', ({ topic, client, user }) => add(user));
//   c.on('leave', ({ topic, client, user }) => remove(user));
//   const members = await c.presence('chat.lobby'); // [{client, user}, ...]
//
// A node that refuses the client says why: an 'error' event with closeCode 4001 (token), 4003
// (origin) or 4013 (busy, "retry in Ns") and the node's reason. A refused token is not tried
// again: the token function is asked for another one (README, "Refusals").
//
//   c.on('error', (e) => { if (e.closeCode === CloseCode.TOKEN_EXPIRED) showLogin(e.reason); });
//
// One client is one WebSocket with its own token, retry and delivery policy: open several small
// clients rather than one that does everything.
//
// A page that only receives can use Server-Sent Events instead (GET /sse): plain HTTP, the
// browser's EventSource and its own reconnect, the same handler shape.
//
//   import { sse } from '/js/subsock.js';
//   const feed = sse('/sse', { topics: ['prices.ACME'] });
//   feed.on('message', (data, topic, { offset }) => console.log(topic, data));
//   feed.on('lost', ({ topic }) => reload(topic));

/** The subprotocol names, by the `protocol` option. */
export const Subprotocol = Object.freeze({ json: 'subsock.v1.json', msgpack: 'subsock.v1.msgpack' });

/** Close codes the server sends (docs/protocol.md, "Close codes"). */
export const CloseCode = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  PROTOCOL_ERROR: 1002,
  ABNORMAL: 1006,
  INVALID_DATA: 1007,
  POLICY_VIOLATION: 1008,
  TOO_BIG: 1009,
  INTERNAL: 1011,
  TRY_AGAIN_LATER: 1013,
  HEARTBEAT_TIMEOUT: 4000,
  TOKEN_EXPIRED: 4001, // the token expired, or (right after the upgrade) was refused: no, invalid or expired
  DISCONNECTED: 4003, // a backend had the server disconnect this client, or (right after the upgrade) the page's origin is not allowed
  TRY_LATER: 4013, // refused for now (admission limit, draining node); the reason ends with "retry in Ns"
});

/** Connection states, reported by on('state', fn). */
export const State = Object.freeze({
  CONNECTING: 'connecting', // a socket is being opened
  OPEN: 'open', // connected; subscriptions are being (re)established
  RECONNECTING: 'reconnecting', // dropped or refused; waiting detail.delay ms before the next attempt
  CLOSED: 'closed', // close() was called, the server disconnected the client (4003), or it refused a token no function can replace; final
});

/** Option defaults; every field can be overridden per connection. */
export const defaults = Object.freeze({
  protocol: 'json',
  backoff: Object.freeze({ min: 500, max: 30000 }),
  pingInterval: 20000, // ms between app-level pings when the server is quiet; 0 disables them
  pingTimeout: 10000, // ms a ping may go unanswered before the connection is deemed dead
  maxBuffered: 256, // publishes held while disconnected
  maxTopicsPerRequest: 256, // the server's -max-topics-per-request default
});

// A connection that lasted this long resets the backoff: its drop is a new incident, not a retry.
const STABLE_MS = 5000;

// Two refusals with 4003 within this long: no attempt before it has passed since the first.
const FORBIDDEN_WINDOW_MS = 10000;

// Refusals (close codes a node sends right after the upgrade when asked with refuse=close),
// by the SubsockError code they become.
const REFUSALS = new Map([[4001, 'unauthorized'], [4003, 'refused'], [4013, 'try_later']]);

// Rejections of these codes will not change by retrying the same request.
const PERMANENT = new Set(['bad_request', 'unknown_op', 'invalid_topic', 'too_many_subscriptions', 'too_large', 'forbidden']);

// Rejections the caller caused or cannot act on: an ignored promise must not surface as an
// unhandled rejection.
const QUIET = new Set(['canceled', 'closed', 'disconnected', 'unsubscribed']);

// Messages a topic holds while its publishes without echo wait for their acks (see #holds);
// past this many the hole is recovered as any gap.
const MAX_HELD = 1024;

// The data of an SSE stream's close event when a backend had the server disconnect it.
const SSE_DISCONNECTED = 'disconnected by server';

/**
 * validTopic returns null for a valid concrete topic, or the reason it is not valid:
 * 1-256 bytes of printable ASCII without spaces, '.'-separated non-empty segments, no segment
 * that is exactly '*' or '>'.
 * @param {string} topic
 * @returns {string|null}
 */
export function validTopic(topic) {
  if (typeof topic !== 'string' || topic.length === 0) return 'topic is empty';
  if (topic.length > 256) return 'topic is longer than 256 bytes';
  for (let i = 0; i < topic.length; i++) {
    const c = topic.charCodeAt(i);
    if (c < 0x21 || c > 0x7e) return `topic ${JSON.stringify(topic)} has a character outside printable ASCII at offset ${i}`;
  }
  for (const seg of topic.split('.')) {
    if (seg === '') return `topic ${JSON.stringify(topic)} has an empty segment`;
    if (seg === '*' || seg === '>') return `topic ${JSON.stringify(topic)} has the wildcard segment "${seg}"`;
  }
  return null;
}

/**
 * reconnectDelay is the reconnect policy: exponential backoff with full jitter, a delay drawn
 * uniformly from [0, min(max, min * 2^attempt)]. Close codes 1001 (going away), 1013 and 4013
 * (try again later) raise the attempt count first, so the herd of clients a server just closed
 * never comes straight back and spreads over a wider window; 4001 (token expired) retries at once
 * the first time, since the fresh token fetched for it is the fix. wait, the server's own "retry
 * in Ns" in ms, is added: the delay is at least that, spread by the jitter. It returns the delay
 * in ms and the attempt count to use next time.
 * @param {{attempt:number, code:number, min:number, max:number, wait?:number}} p
 * @param {() => number} [random] a source in [0, 1)
 * @returns {{delay:number, attempt:number}}
 */
export function reconnectDelay({ attempt, code, min, max, wait = 0 }, random = Math.random) {
  if (code === CloseCode.GOING_AWAY) attempt = Math.max(attempt, 1);
  if (code === CloseCode.TRY_AGAIN_LATER || code === CloseCode.TRY_LATER) attempt = Math.max(attempt, 3);
  const cap = Math.min(max, min * 2 ** Math.min(attempt, 30));
  const delay = code === CloseCode.TOKEN_EXPIRED && attempt === 0 ? 0 : Math.round(random() * cap);
  return { delay: Math.max(0, wait) + delay, attempt: attempt + 1 };
}

/**
 * SubsockError is how every promise of this module rejects: code is one of the protocol's error
 * codes (bad_request, forbidden, not_enabled, ...) or a client-side one: unavailable (not
 * connected, or the connection dropped before the ack), closed (close() was called),
 * disconnected (the server disconnected the client, close code 4003), canceled (unsubscribed
 * before the subscription was confirmed), unsubscribed (the server removed the subscription
 * before it was confirmed), token (the token function failed), encoding, or a refusal of the
 * connection: unauthorized (4001: no, invalid or expired token), refused (4003: the page's
 * origin is not allowed), try_later (4013: an admission limit or a draining node).
 * An error that comes from a close also has closeCode (4001, 4003, 4013) and reason (the
 * server's close reason).
 */
export class SubsockError extends Error {
  constructor(code, msg, close = undefined) {
    super(`${code}: ${msg}`);
    this.name = 'SubsockError';
    this.code = code;
    this.msg = msg;
    if (close) {
      this.closeCode = close.code;
      this.reason = close.reason;
    }
  }
}

let msgpackModule = null; // Promise of the vendored module, shared by every msgpack client

function loadCodec(protocol, custom) {
  if (protocol === 'json') return Promise.resolve(jsonCodec);
  if (protocol !== 'msgpack') return Promise.reject(new SubsockError('bad_request', `unknown protocol ${JSON.stringify(protocol)}: use json or msgpack`));
  const mod = custom
    ? Promise.resolve(custom)
    : (msgpackModule ??= import('./vendor/msgpack/index.mjs').catch((e) => {
        msgpackModule = null; // let a later attempt try again
        throw e;
      }));
  return mod.then((mp) => ({ name: Subprotocol.msgpack, encode: (m) => mp.encode(m), decode: (b) => mp.decode(new Uint8Array(b)) }));
}

// The metadata of a message on a topic without history.
const NO_OFFSET = Object.freeze({ offset: undefined, epoch: undefined });

function validPosition(p) {
  return p !== null && typeof p === 'object' && Number.isSafeInteger(p.offset) && p.offset >= 0 && typeof p.epoch === 'string' && p.epoch !== '';
}

const jsonCodec = Object.freeze({
  name: Subprotocol.json,
  encode: (m) => JSON.stringify(m),
  decode: (s) => JSON.parse(s),
});

function report(e) {
  // A throwing handler must not break the client; surface it the way an uncaught error would be.
  if (typeof globalThis.reportError === 'function') globalThis.reportError(e);
  else setTimeout(() => { throw e; });
}

function socketURL(url, token) {
  const u = new URL(url, globalThis.location?.href);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  // Browsers cannot set headers on a WebSocket handshake, so the token travels in the query.
  if (token) u.searchParams.set('token', token);
  // A refused handshake reads as 1006 and nothing more: ask to be refused with a close code.
  u.searchParams.set('refuse', 'close');
  return u.href;
}

/**
 * connect opens a client and keeps it connected until close().
 * @param {string} url ws://, wss://, http(s):// or a path such as '/ws' (resolved against the page)
 * @param {object} [opts]
 * @param {'json'|'msgpack'} [opts.protocol]
 * @param {string|(() => string|Promise<string>)} [opts.token] sent as ?token=; a function is called
 *   again for a fresh token after close code 4001 and after a failed handshake. After the node
 *   refused a token (4001) or the client (4003), the client reconnects only with a token other
 *   than the refused one: a function is asked again on the backoff; with a string or no token
 *   the client closes.
 * @param {{min:number,max:number}} [opts.backoff] reconnect delay bounds in ms (exponential, full jitter)
 * @param {number} [opts.pingInterval]
 * @param {number} [opts.pingTimeout]
 * @param {number} [opts.maxBuffered]
 * @param {number} [opts.maxTopicsPerRequest]
 * @param {{encode:Function, decode:Function}} [opts.msgpack] a MessagePack module to use instead of the vendored one
 * @returns {Client}
 */
export function connect(url, opts = {}) {
  return new Client(url, opts);
}

export class Client {
  #url;
  #opts;
  #ws = null;
  #codec = null;
  #state = null;
  #live = false; // the current socket is upgraded: requests can go
  #admitted = false; // the current socket got a first frame: the node did not refuse it
  #refusal = null; // {code, reason, token} while a refused token holds the client (4001, 4003)
  #forbiddenAt = 0; // when the last 4003 refusal came
  #notBefore = 0; // no attempt before this (two 4003 refusals within FORBIDDEN_WINDOW_MS)
  #closed = false;
  #closedErr = null; // why: what calls reject with once closed
  #listeners = new Map(); // event -> Set<fn>
  #topics = new Map(); // topic -> see #newTopic
  #pending = new Map(); // request id -> {kind, resolve, reject, topics, since}, for the current socket only
  #outbox = []; // publishes waiting for a connection
  #nextId = 1;
  #attempt = 0;
  #token; // undefined: fetch before the next attempt
  #reconnectTimer = null;
  #pingTimer = null;
  #deadTimer = null;
  #lastRecv = 0;
  #openedAt = 0;

  constructor(url, opts = {}) {
    this.#url = url;
    this.#opts = {
      ...defaults,
      ...opts,
      backoff: { ...defaults.backoff, ...(opts.backoff || {}) },
    };
    if (typeof opts.token === 'string') this.#token = opts.token;
    // Dial on a microtask so listeners added right after connect() see the first 'connecting'.
    queueMicrotask(() => this.#dial());
  }

  /** The current state: connecting, open, reconnecting or closed. */
  get state() {
    return this.#state;
  }

  /** The subprotocol the server accepted on the current socket ('' before the first open). */
  get protocol() {
    return this.#ws && this.#state === State.OPEN ? this.#ws.protocol : '';
  }

  /** The topics this client holds (subscribed or waiting to be). */
  topics() {
    return [...this.#topics.keys()];
  }

  /**
   * on registers fn for an event and returns a function that removes it.
   * 'state': fn(state, detail) — detail has {attempt, delay, code, reason} when reconnecting.
   * 'subscribed': fn(topics) — the server confirmed these topics, after subscribe() and after
   *   every resubscription on reconnect: from then on their messages flow.
   * 'error': fn(SubsockError & {topics?}) — server errors with no request to reject, failed
   *   subscriptions, token and codec failures, and the node's refusals (code unauthorized,
   *   refused or try_later, with closeCode and reason; see the README's "Refusals").
   * 'recover': fn({topic, recovered, offset, epoch}) — a topic with history was resubscribed
   *   from its position (after a reconnect, or a gap in its live stream) or its stream lost its
   *   past. recovered true: every message missed was delivered, in order, before this event.
   *   false: some were lost for good (the stream's epoch changed, or it no longer holds them);
   *   the application should reload its state. offset and epoch are the position from which
   *   messages continue.
   * 'join', 'leave': fn({topic, client, user}) — another connection subscribed to, or left, a
   *   topic this client holds that has join-leave events (the node's -join-leave), on any node.
   *   Not this client's own, nor the members there before it came: ask presence().
   * 'unsubscribed': fn({topic}) — the server removed the subscription (a backend asked it to):
   *   the topic is dropped, its handlers get nothing more, and no reconnect resubscribes it.
   * 'disconnected': fn({code, reason}) — the server disconnected the client (close code 4003 on
   *   an open connection, a backend asked it to): the client does not reconnect. The 'state'
   *   event that follows is 'closed', and pending and later calls reject with code
   *   'disconnected'.
   */
  on(event, fn) {
    if (typeof fn !== 'function') throw new TypeError('subsock: on() needs a function');
    let set = this.#listeners.get(event);
    if (!set) this.#listeners.set(event, (set = new Set()));
    set.add(fn);
    return () => this.off(event, fn);
  }

  off(event, fn) {
    this.#listeners.get(event)?.delete(fn);
  }

  /**
   * subscribe adds handler(data, topic, {offset, epoch}) for topic. The promise resolves when the
   * server has confirmed the subscription (at once if it already had) and rejects with a
   * SubsockError. Subscriptions survive reconnects: the client resubscribes everything it holds.
   * On a topic with history, offset is the message's place in the stream and epoch the stream's
   * (null while not yet known); on other topics both are undefined. Options, which count only
   * when the topic is not held yet:
   *   last: n — first replay the last n messages the stream holds (before the promise resolves);
   *   since: {offset, epoch} — start after this position (from position(), kept by the
   *     application), with a 'recover' event saying whether the messages since were replayed.
   */
  subscribe(topic, handler, { last = 0, since = null } = {}) {
    if (typeof handler !== 'function') throw new TypeError('subsock: subscribe() needs a handler function');
    const why = validTopic(topic);
    if (why) return Promise.reject(new SubsockError('invalid_topic', why));
    if (this.#closed) return Promise.reject(this.#closedError());
    if (!Number.isSafeInteger(last) || last < 0) return Promise.reject(new SubsockError('bad_request', `last must be a whole number >= 0, not ${last}`));
    if (since !== null && !validPosition(since)) return Promise.reject(new SubsockError('bad_request', 'since must be {offset, epoch} as position() returns it'));
    let t = this.#topics.get(topic);
    if (t) {
      t.handlers.add(handler);
      return t.subscribed ? Promise.resolve() : this.#waitFor(t);
    }
    t = this.#newTopic(handler, last, since);
    this.#topics.set(topic, t);
    const p = this.#waitFor(t);
    if (this.#live) this.#sendSub([topic]);
    return p;
  }

  /**
   * position returns where topic's stream stands for this client, {offset, epoch} of the last
   * message delivered or acknowledged by the server, or null (no history, or not known yet).
   * Hand it to subscribe(topic, handler, {since}) to resume later, on another client.
   */
  position(topic) {
    const pos = this.#topics.get(topic)?.pos;
    return pos && pos.epoch !== null ? { offset: pos.offset, epoch: pos.epoch } : null;
  }

  /**
   * unsubscribe removes handler from topic, or every handler when none is given; the server is
   * told once no handler is left. The promise resolves on the server's ack (at once when offline).
   */
  unsubscribe(topic, handler) {
    const t = this.#topics.get(topic);
    if (!t) return Promise.resolve();
    if (handler) {
      t.handlers.delete(handler);
      if (t.handlers.size > 0) return Promise.resolve();
    }
    this.#topics.delete(topic);
    clearTimeout(t.retryTimer);
    this.#settle(t, new SubsockError('canceled', `unsubscribed from ${topic}`));
    if (!this.#live) return Promise.resolve();
    return this.#request({ op: 'unsub', topics: [topic] }, 'unsub');
  }

  /**
   * publish sends data (any value the codec can carry) to topic. With {ack: true} the promise
   * resolves on the server's ack and rejects with the server's {code, msg}; without, it resolves
   * once the message is handed to the socket. On a topic with history the ack carries the
   * message's place: the promise resolves with {offset, epoch}. While disconnected, up to
   * maxBuffered publishes wait for the next connection. An ack-ed publish whose connection drops
   * before the ack rejects with code 'unavailable': the server may or may not have taken it.
   * With {echo: false} every subscriber gets the message but this client ("echo":false); on a
   * history topic the client counts its offset as seen (the request always asks for the ack that
   * carries it), so the hole it leaves in this client's stream is no gap to recover.
   */
  publish(topic, data, { ack = false, echo = true } = {}) {
    const why = validTopic(topic);
    if (why) return Promise.reject(new SubsockError('invalid_topic', why));
    if (this.#closed) return Promise.reject(this.#closedError());
    return new Promise((resolve, reject) => {
      const item = { topic, data: data === undefined ? null : data, ack, echo: echo !== false, resolve, reject };
      if (this.#state === State.OPEN) this.#sendPub(item);
      else if (this.#outbox.length < this.#opts.maxBuffered) this.#outbox.push(item);
      else reject(new SubsockError('unavailable', `not connected, and ${this.#outbox.length} publishes already wait`));
    });
  }

  /**
   * refreshToken fetches a fresh token from the token function and, when connected, hands it to
   * the server in band ({op:"auth"}); the promise resolves on the server's ack.
   */
  async refreshToken() {
    if (typeof this.#opts.token !== 'function') throw new SubsockError('bad_request', 'refreshToken needs a token function');
    this.#token = await this.#opts.token();
    if (this.#state !== State.OPEN) return;
    return this.#request({ op: 'auth', token: this.#token }, 'auth');
  }

  /**
   * info resolves with what the node says about this connection: {client, user, node}. client is
   * the connection's id, unique in the cluster (a reconnect gets a new one); user the token's
   * subject ('' when anonymous); node the node's id. Rejects with 'unavailable' when not connected.
   */
  info() {
    return this.#query({ op: 'info' }).then((a) => ({ client: a.client ?? '', user: a.user ?? '', node: a.node ?? '' }));
  }

  /**
   * presence resolves with the members of topic across the cluster, [{client, user}, ...] sorted
   * by user then client. The client needs the right to subscribe to topic, not a subscription.
   * Rejects with code 'not_enabled' on a topic the node has no presence for (-presence),
   * 'forbidden', or 'unavailable' when not connected.
   */
  presence(topic) {
    const why = validTopic(topic);
    if (why) return Promise.reject(new SubsockError('invalid_topic', why));
    return this.#query({ op: 'presence', topic }).then((a) => (a.presence ?? []).map((m) => ({ client: m.client, user: m.user ?? '' })));
  }

  /**
   * presenceStats resolves with {clients, users}: how many connections and distinct users (the
   * anonymous counting as one) are subscribed to topic across the cluster. Rejects as presence.
   */
  presenceStats(topic) {
    const why = validTopic(topic);
    if (why) return Promise.reject(new SubsockError('invalid_topic', why));
    return this.#query({ op: 'presence_stats', topic }).then((a) => ({ clients: a.clients ?? 0, users: a.users ?? 0 }));
  }

  /** close ends the client: no reconnect, pending promises reject with code 'closed'. */
  close() {
    this.#shutdown(new SubsockError('closed', 'the client is closed'), {});
  }

  // #shutdown ends the client for good: pending and later calls reject with err.
  #shutdown(err, detail) {
    if (this.#closed) return;
    this.#closed = true;
    this.#closedErr = err;
    this.#live = false;
    clearTimeout(this.#reconnectTimer);
    this.#stopHeartbeat();
    const ws = this.#ws;
    this.#ws = null;
    if (ws) {
      this.#detach(ws);
      try {
        ws.close(CloseCode.NORMAL);
      } catch {
        // already closing
      }
    }
    this.#failPending(err);
    for (const item of this.#outbox.splice(0)) item.reject(err);
    for (const t of this.#topics.values()) {
      clearTimeout(t.retryTimer);
      this.#settle(t, err);
    }
    this.#setState(State.CLOSED, detail);
  }

  #closedError() {
    const e = this.#closedErr;
    return new SubsockError(e.code, e.msg, e.closeCode === undefined ? undefined : { code: e.closeCode, reason: e.reason });
  }

  #query(m) {
    if (this.#closed) return Promise.reject(this.#closedError());
    if (this.#state !== State.OPEN) return Promise.reject(new SubsockError('unavailable', 'not connected'));
    return this.#request(m, 'query');
  }

  // --- connection lifecycle ---------------------------------------------------------------

  async #dial() {
    if (this.#closed) return;
    // While a refused token holds the client, asking the token function is not an attempt.
    if (!this.#refusal) this.#setState(State.CONNECTING, { attempt: this.#attempt });
    let codec, token;
    try {
      codec = await loadCodec(this.#opts.protocol, this.#opts.msgpack);
    } catch (e) {
      this.#emit('error', e instanceof SubsockError ? e : new SubsockError('encoding', `loading the ${this.#opts.protocol} codec: ${e.message}`));
      return this.#retry(CloseCode.ABNORMAL, 'codec unavailable', false);
    }
    try {
      if (this.#token === undefined && typeof this.#opts.token === 'function') this.#token = await this.#opts.token();
      token = this.#token;
    } catch (e) {
      this.#emit('error', new SubsockError('token', `token function failed: ${e?.message ?? e}`));
      return this.#retry(CloseCode.ABNORMAL, 'no token', false);
    }
    if (this.#closed) return;
    const refusal = this.#refusal;
    if (refusal) {
      if (token === refusal.token) {
        // Nothing new: the node would refuse it again. Ask again after the backoff.
        this.#token = undefined;
        return this.#retry(refusal.code, refusal.reason, false);
      }
      this.#refusal = null;
      this.#setState(State.CONNECTING, { attempt: this.#attempt });
    }
    let ws;
    try {
      ws = new WebSocket(socketURL(this.#url, token), codec.name);
    } catch (e) {
      // A malformed URL will not get better: report it and stay down.
      this.#emit('error', new SubsockError('bad_request', e.message));
      this.close();
      return;
    }
    ws.binaryType = 'arraybuffer';
    this.#ws = ws;
    this.#admitted = false;
    ws.onopen = () => this.#onUpgrade(ws, codec);
    ws.onmessage = (ev) => {
      if (!this.#admitted) this.#onAdmitted(ws);
      this.#onMessage(ev);
    };
    ws.onclose = (ev) => {
      if (this.#ws !== ws) return;
      this.#ws = null;
      this.#lost(ev.code, ev.reason, this.#admitted);
    };
    ws.onerror = () => {}; // onclose follows with the code
  }

  // #onUpgrade runs when the handshake is done. A node that refuses the client (refuse=close)
  // closes right after it, so the client is not open yet: a ping asks for the first frame, which
  // says it was let in (#onAdmitted). The subscriptions go at once, to lose no round trip.
  #onUpgrade(ws, codec) {
    // A server that declined our subprotocol speaks JSON (the protocol's default).
    this.#codec = ws.protocol === Subprotocol.msgpack ? codec : jsonCodec;
    this.#live = true;
    this.#startHeartbeat();
    this.#send({ op: 'ping' });
    this.#deadTimer = setTimeout(() => this.#dead(), this.#opts.pingTimeout);
    // 'last' applies to every history topic of a request, so topics still waiting for their
    // first replay go in requests of their own, one per count; the rest resume from 'since'.
    const groups = new Map(); // last -> topics
    for (const [name, t] of this.#topics) {
      const last = this.#sinceOf(t) ? 0 : t.last;
      if (!groups.has(last)) groups.set(last, []);
      groups.get(last).push(name);
    }
    const n = this.#opts.maxTopicsPerRequest;
    for (const names of groups.values()) for (let i = 0; i < names.length; i += n) this.#sendSub(names.slice(i, i + n));
  }

  // #onAdmitted runs at the first frame of a socket: the node let the client in. The publishes
  // that waited for a connection go only now, so a refusal cannot swallow them.
  #onAdmitted(ws) {
    this.#admitted = true;
    this.#notBefore = 0;
    this.#openedAt = Date.now();
    this.#setState(State.OPEN, { protocol: ws.protocol });
    for (const item of this.#outbox.splice(0)) this.#sendPub(item);
  }

  // #lost handles a socket that closed (or was declared dead) while the client wants to be up.
  // admitted: the node had let it in (see #onAdmitted).
  #lost(code, reason, admitted) {
    this.#stopHeartbeat();
    this.#live = false;
    if (code === CloseCode.DISCONNECTED && admitted) {
      // A backend had the server end this client: coming back unchanged would undo that.
      this.#emit('disconnected', { code, reason });
      this.#shutdown(new SubsockError('disconnected', reason || 'disconnected by the server', { code, reason }), { code, reason });
      return;
    }
    // Closed before its first frame with one of these codes, the socket was refused (refuse=close).
    const refused = !admitted && REFUSALS.has(code);
    const err = refused
      ? new SubsockError(REFUSALS.get(code), reason || `refused with close code ${code}`, { code, reason })
      : new SubsockError('unavailable', `connection lost (${code}${reason ? ' ' + reason : ''}) before the reply`);
    this.#failPending(err);
    for (const t of this.#topics.values()) {
      t.subscribed = false;
      t.recovering = false;
      // What was held waits for acks that will not come; the resubscription replays it.
      t.pubs = 0;
      t.held = [];
      clearTimeout(t.retryTimer);
      // The topic stays held, and is subscribed once a connection is let in.
      if (refused) this.#settle(t, err);
    }
    if (refused) {
      for (const item of this.#outbox.splice(0)) item.reject(err);
      this.#emit('error', err);
    }
    if (code === CloseCode.TRY_LATER && refused) {
      const m = /retry in (\d+)s/.exec(reason);
      return this.#retry(code, reason, false, m ? Number(m[1]) * 1000 : 0);
    }
    if (code === CloseCode.TOKEN_EXPIRED || (code === CloseCode.DISCONNECTED && refused)) {
      // The node refused this token (4001: expired or bad) or this client (4003): the same token
      // would only be refused again. Another one from the token function may do; without a
      // function there is no other.
      if (typeof this.#opts.token !== 'function') {
        const stop = refused ? err : new SubsockError('unauthorized', reason || 'token expired', { code, reason });
        if (!refused) this.#emit('error', stop);
        this.#shutdown(stop, { code, reason });
        return;
      }
      this.#refusal = { code, reason, token: this.#token };
      this.#token = undefined;
      if (code === CloseCode.DISCONNECTED) {
        const now = Date.now();
        this.#notBefore = now - this.#forbiddenAt < FORBIDDEN_WINDOW_MS ? this.#forbiddenAt + FORBIDDEN_WINDOW_MS : 0;
        this.#forbiddenAt = now;
      }
      return this.#retry(code, reason, admitted);
    }
    // A refused handshake may have been refused for the token: ask the token function for a
    // fresh one (a fixed string token is all there is, so it stays).
    if (!admitted && typeof this.#opts.token === 'function') this.#token = undefined;
    this.#retry(code, reason, admitted);
  }

  // #retry schedules the next attempt; wait (ms) is the server's own "retry in".
  #retry(code, reason, opened, wait = 0) {
    if (this.#closed) return;
    if (opened && Date.now() - this.#openedAt >= STABLE_MS) this.#attempt = 0;
    const next = reconnectDelay({ attempt: this.#attempt, code, wait, ...this.#opts.backoff });
    const delay = Math.max(next.delay, this.#notBefore - Date.now());
    this.#attempt = next.attempt;
    this.#setState(State.RECONNECTING, { attempt: this.#attempt, delay, code, reason });
    this.#reconnectTimer = setTimeout(() => this.#dial(), delay);
  }

  #detach(ws) {
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
  }

  // --- heartbeat: browsers cannot send WebSocket pings, so a silent server is found with op ping

  #startHeartbeat() {
    this.#lastRecv = Date.now();
    const every = this.#opts.pingInterval;
    if (!(every > 0)) return;
    this.#pingTimer = setInterval(() => {
      if (this.#deadTimer !== null || Date.now() - this.#lastRecv < every / 2) return;
      this.#send({ op: 'ping' });
      this.#deadTimer = setTimeout(() => this.#dead(), this.#opts.pingTimeout);
    }, every);
  }

  #stopHeartbeat() {
    clearInterval(this.#pingTimer);
    clearTimeout(this.#deadTimer);
    this.#pingTimer = this.#deadTimer = null;
  }

  #dead() {
    const ws = this.#ws;
    if (!ws) return;
    // A silent peer would never finish a close handshake: give up on it now.
    this.#ws = null;
    this.#detach(ws);
    try {
      ws.close(CloseCode.HEARTBEAT_TIMEOUT, 'heartbeat timeout');
    } catch {
      // already closing
    }
    this.#lost(CloseCode.HEARTBEAT_TIMEOUT, 'no reply to ping', this.#admitted);
  }

  // --- frames -------------------------------------------------------------------------------

  #onMessage(ev) {
    this.#lastRecv = Date.now();
    clearTimeout(this.#deadTimer);
    this.#deadTimer = null;
    let m;
    try {
      m = typeof ev.data === 'string' ? jsonCodec.decode(ev.data) : this.#codec.decode(ev.data);
    } catch (e) {
      this.#emit('error', new SubsockError('bad_request', `undecodable frame from the server: ${e.message}`));
      return;
    }
    if (m === null || typeof m !== 'object') return;
    switch (m.op) {
      case 'msg': {
        const t = this.#topics.get(m.topic);
        if (!t) return;
        if (m.offset != null && this.#holds(t, m)) {
          if (t.held.length < MAX_HELD) {
            t.held.push(m);
            return;
          }
          t.held = []; // too long a wait: recover the gap as any other
        }
        return this.#deliver(t, m);
      }
      case 'join':
      case 'leave':
        if (typeof m.topic === 'string' && this.#topics.has(m.topic)) this.#emit(m.op, { topic: m.topic, client: m.client ?? '', user: m.user ?? '' });
        return;
      case 'unsubscribed': {
        const t = this.#topics.get(m.topic);
        if (!t) return;
        this.#topics.delete(m.topic);
        clearTimeout(t.retryTimer);
        this.#settle(t, new SubsockError('unsubscribed', `the server removed the subscription to ${m.topic}`));
        this.#emit('unsubscribed', { topic: m.topic });
        return;
      }
      case 'ack':
        return this.#reply(m.id, null, m);
      case 'err': {
        const err = new SubsockError(m.code ?? 'internal', m.msg ?? '');
        if (m.id === undefined || !this.#pending.has(m.id)) this.#emit('error', err);
        else this.#reply(m.id, err);
        return;
      }
      default: // pong: its arrival already counted as life
    }
  }

  #deliver(t, m) {
    const meta = m.offset == null ? NO_OFFSET : this.#track(m.topic, t, m);
    if (meta === null) return;
    for (const h of [...t.handlers]) {
      try {
        h(m.data, m.topic, meta);
      } catch (e) {
        report(e);
      }
    }
  }

  #reply(id, err, ack) {
    const p = this.#pending.get(id);
    if (!p) return;
    this.#pending.delete(id);
    if (p.kind === 'sub') return this.#subReply(p, err, ack);
    if (p.kind === 'pub') return this.#pubReply(p, err, ack);
    if (err) p.reject(err);
    else if (p.kind === 'query') p.resolve(ack);
    else p.resolve();
  }

  #pubReply(p, err, ack) {
    if (p.t) this.#ownDone(p.topic, p.t, err ? null : ack);
    if (!p.ack) {
      // A publish without echo asks for the ack for itself; its caller was not waiting.
      if (err) this.#emit('error', err);
      return;
    }
    if (err) p.reject(err);
    else if (ack.offset != null) p.resolve({ offset: ack.offset, epoch: ack.epoch ?? null });
    else p.resolve();
  }

  #subReply({ topics, since }, err, ack) {
    for (const name of since) {
      const t = this.#topics.get(name);
      if (t) t.recovering = false;
    }
    if (!err) {
      const confirmed = [];
      const recovered = [];
      for (const name of topics) {
        const t = this.#topics.get(name);
        if (!t || t.subscribed) continue;
        const p = ack.positions?.[name];
        if (p && p.offset != null) this.#place(t, p.offset, p.epoch ?? null);
        else t.pos = null; // the topic has no history (or no longer has)
        if (since.has(name)) {
          recovered.push({ topic: name, recovered: p?.recovered === true, offset: t.pos?.offset, epoch: t.pos?.epoch });
        }
        if (t.pos?.epoch != null) t.last = 0; // replayed; from now on it resumes with since
        t.subscribed = true;
        t.retries = 0;
        confirmed.push(name);
        this.#settle(t, null);
      }
      for (const r of recovered) this.#emit('recover', r);
      if (confirmed.length > 0) this.#emit('subscribed', confirmed);
      return;
    }
    const permanent = PERMANENT.has(err.code);
    if (permanent && topics.length > 1) {
      // One bad topic fails the whole request: find it by asking one topic at a time.
      for (const name of topics) if (this.#topics.has(name)) this.#sendSub([name]);
      return;
    }
    err.topics = topics;
    this.#emit('error', err);
    for (const name of topics) {
      const t = this.#topics.get(name);
      if (!t) continue;
      if (permanent) {
        this.#topics.delete(name);
        this.#settle(t, err);
        continue;
      }
      // Transient (broker unavailable, rate limited): keep the topic and ask again later.
      const { min, max } = this.#opts.backoff;
      const delay = Math.round(Math.random() * Math.min(max, min * 2 ** ++t.retries));
      clearTimeout(t.retryTimer);
      t.retryTimer = setTimeout(() => {
        if (this.#state === State.OPEN && this.#topics.get(name) === t && !t.subscribed) this.#sendSub([name]);
      }, delay);
    }
  }

  // #sendSub asks for topics, each from its kept position when it has one: the server replays
  // what the subscriber missed before its ack. Topics without a position but asking for 'last'
  // must share the count (see #onUpgrade); a single topic always does.
  #sendSub(topics) {
    const id = this.#nextId++;
    const m = { op: 'sub', id, topics };
    const since = new Set();
    let last = 0;
    for (const name of topics) {
      const t = this.#topics.get(name);
      const pos = t && this.#sinceOf(t);
      if (pos) {
        m.since ??= {};
        m.since[name] = pos;
        since.add(name);
        t.recovering = true;
      } else if (t) last = Math.max(last, t.last);
    }
    if (last > 0) m.last = last;
    this.#pending.set(id, { kind: 'sub', topics, since });
    this.#send(m);
  }

  // --- history ------------------------------------------------------------------------------

  #newTopic(handler, last, since) {
    return {
      handlers: new Set([handler]),
      subscribed: false, // the server confirmed it on the current socket
      waiters: [], // subscribe() promises waiting for that
      retries: 0, // transient refusals in a row
      retryTimer: null,
      last, // messages to replay on the first subscription
      pos: since && { offset: since.offset, epoch: since.epoch }, // {offset, epoch|null} or null: the last message delivered
      recovering: false, // a sub with since is on its way: its replay will bring what is missing
      own: new Set(), // offsets of this client's publishes without echo beyond pos, in ownEpoch
      ownEpoch: null,
      pubs: 0, // publishes without echo on the current socket waiting for their ack
      held: [], // messages after a gap, kept while pubs > 0 (see #holds)
    };
  }

  // #holds reports whether m, a message with an offset, must wait: publishes of this client
  // without echo are in flight, and m lies after a hole that may be one of theirs (the ack and
  // the messages published after it travel apart). Their acks say; then the held are delivered.
  #holds(t, m) {
    if (t.pubs === 0) return false;
    if (t.held.length > 0) return true;
    const pos = t.pos;
    return t.subscribed && !t.recovering && pos !== null && pos.epoch !== null &&
      (m.epoch == null || m.epoch === pos.epoch) && m.offset > pos.offset + 1;
  }

  // #ownDone takes the answer (ack, or null) to a publish without echo of topic: its offset is
  // seen. Once none is in flight, the messages held meanwhile are judged.
  #ownDone(topic, t, ack) {
    if (this.#topics.get(topic) !== t) return;
    t.pubs = Math.max(0, t.pubs - 1);
    const pos = t.pos;
    if (ack && Number.isSafeInteger(ack.offset) && typeof ack.epoch === 'string' && !(pos && pos.epoch === ack.epoch && ack.offset <= pos.offset)) {
      if (t.ownEpoch !== ack.epoch) {
        t.own = new Set();
        t.ownEpoch = ack.epoch;
      }
      t.own.add(ack.offset);
      this.#absorb(t);
    }
    if (t.pubs > 0 || t.held.length === 0) return;
    const held = t.held;
    t.held = [];
    for (const m of held) {
      if (this.#topics.get(topic) !== t) return;
      this.#deliver(t, m);
    }
  }

  // #absorb moves t's position over this client's own offsets that follow it.
  #absorb(t) {
    const pos = t.pos;
    if (t.own.size === 0 || !pos || pos.epoch === null) return;
    if (pos.epoch !== t.ownEpoch) {
      t.own.clear();
      return;
    }
    while (t.own.delete(pos.offset + 1)) pos.offset++;
    for (const o of t.own) if (o <= pos.offset) t.own.delete(o);
  }

  // #sinceOf is the position to resume t from, or null when it has none to offer the server.
  #sinceOf(t) {
    return t.pos && t.pos.epoch !== null ? { offset: t.pos.offset, epoch: t.pos.epoch } : null;
  }

  // #track advances topic's position with m, a msg with an offset, and returns the metadata
  // to hand to the handlers, or null when m must not be delivered: a duplicate, or a message
  // after a gap, which the resubscription it starts (or one already on its way) replays.
  #track(topic, t, m) {
    const offset = m.offset;
    const epoch = m.epoch ?? null;
    const pos = t.pos;
    if (pos === null) {
      t.pos = { offset, epoch };
      return { offset, epoch };
    }
    if (epoch !== null && pos.epoch !== null && epoch !== pos.epoch) {
      // The stream lost its past: what was missed will never come. Continue from here.
      t.pos = { offset, epoch };
      t.own.clear();
      this.#emit('recover', { topic, recovered: false, offset, epoch });
      return { offset, epoch };
    }
    if (epoch !== null) pos.epoch = epoch;
    if (offset <= pos.offset) return null;
    if (offset > pos.offset + 1 && pos.epoch !== null) {
      if (t.recovering) return null;
      if (t.subscribed) {
        this.#recoverGap(topic, t);
        return null;
      }
      // A first subscription (a 'last' replay): there is nothing before it to recover.
    }
    if (t.own.has(offset) && pos.epoch === t.ownEpoch) {
      // A replay of this client's own publish without echo: seen, not delivered.
      pos.offset = offset;
      this.#absorb(t);
      return null;
    }
    pos.offset = offset;
    this.#absorb(t);
    return { offset, epoch: pos.epoch };
  }

  // #recoverGap resubscribes topic from its position after its live stream skipped offsets:
  // the node replays them before it acks, then live delivery continues after them.
  #recoverGap(topic, t) {
    t.subscribed = false;
    this.#send({ op: 'unsub', topics: [topic] }); // no id: a reply would only say it is done
    this.#sendSub([topic]);
  }

  // #place sets t's position from an ack. In the same epoch it never moves back: a message
  // the client already delivered stays delivered.
  #place(t, offset, epoch) {
    const pos = t.pos;
    if (pos && (pos.epoch === epoch || pos.epoch === null) && pos.offset > offset) offset = pos.offset;
    t.pos = { offset, epoch };
    this.#absorb(t);
  }

  #sendPub(item) {
    const m = { op: 'pub', topic: item.topic, data: item.data };
    // Without echo the ack is always asked for: its offset is a hole in this client's stream.
    const t = item.echo ? null : this.#topics.get(item.topic) ?? null;
    if (!item.echo) m.echo = false;
    if (item.ack || !item.echo) {
      m.id = this.#nextId++;
      this.#pending.set(m.id, { kind: 'pub', topic: item.topic, t, ack: item.ack, resolve: item.resolve, reject: item.reject });
      if (t) t.pubs++;
    }
    const err = this.#send(m);
    if (err) {
      if (m.id !== undefined) {
        this.#pending.delete(m.id);
        if (t) t.pubs--;
      }
      item.reject(err);
    } else if (!item.ack) item.resolve();
  }

  #request(m, kind) {
    return new Promise((resolve, reject) => {
      m.id = this.#nextId++;
      this.#pending.set(m.id, { kind, resolve, reject });
      const err = this.#send(m);
      if (err) {
        this.#pending.delete(m.id);
        reject(err);
      }
    });
  }

  // #send encodes and writes m; it returns a SubsockError instead of throwing.
  #send(m) {
    const ws = this.#ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return new SubsockError('unavailable', 'not connected');
    let frame;
    try {
      frame = this.#codec.encode(m);
    } catch (e) {
      return new SubsockError('encoding', `cannot encode ${m.op}: ${e.message}`);
    }
    ws.send(frame);
    return null;
  }

  // --- helpers ------------------------------------------------------------------------------

  #waitFor(t) {
    const w = {};
    w.promise = new Promise((resolve, reject) => Object.assign(w, { resolve, reject }));
    t.waiters.push(w);
    return w.promise;
  }

  #settle(t, err) {
    for (const w of t.waiters.splice(0)) {
      if (!err) {
        w.resolve();
        continue;
      }
      // The caller ended the wait itself (unsubscribe, close), or the server did: an ignored
      // promise must not surface as an unhandled rejection. Awaiting it still sees the error.
      if (QUIET.has(err.code)) w.promise.catch(() => {});
      w.reject(err);
    }
  }

  #failPending(err) {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) {
      if (p.kind === 'sub' || p.kind === 'ping') continue; // the topic stays held; resubscribed on reconnect
      if (p.kind === 'unsub') p.resolve(); // a new connection has no subscription to drop
      else p.reject(err);
    }
  }

  #setState(state, detail) {
    this.#state = state;
    this.#emit('state', state, detail);
  }

  #emit(event, ...args) {
    const set = this.#listeners.get(event);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(...args);
      } catch (e) {
        report(e);
      }
    }
  }
}

// --- Server-Sent Events -------------------------------------------------------------------

/**
 * sse opens a receive-only subscription over Server-Sent Events (GET /sse, docs/protocol.md
 * "Server-Sent Events") and keeps it open until close(). It wraps the browser's EventSource:
 * no WebSocket, no subprotocol, plain HTTP that every proxy passes, and the browser's own
 * reconnect. The topics are fixed for the life of the stream; open another for other topics.
 * @param {string} url http(s)://, ws(s):// (mapped to http(s)://) or a path such as '/sse'
 * @param {object} opts
 * @param {string[]|string} opts.topics the topics, as an array or 'a,b'
 * @param {number} [opts.last] on the first connection, replay the last n messages of each history topic first
 * @param {Object<string, {offset:number, epoch:string}>} [opts.since] per topic, start after this
 *   position (from position(), kept by the application)
 * @param {boolean} [opts.withCredentials] send cookies cross-origin (the node must list the page's origin in -allowed-origins)
 * @param {string|(() => string|Promise<string>)} [opts.token] sent as ?token=; a function is
 *   called again for a fresh token each time the browser gives up on the stream
 * @param {{min:number,max:number}} [opts.backoff] bounds in ms of the reopen delay (see EventStream)
 * @returns {EventStream}
 */
export function sse(url, opts) {
  return new EventStream(url, opts);
}

/**
 * EventStream is one SSE stream. Reconnects are the browser's own whenever they resume
 * exactly: EventSource comes back after the server's retry hint (1-3 s) with Last-Event-ID,
 * the id of the last message it got, and the node resumes right after it when the stream has
 * one history topic. The stream opens a new EventSource itself, after a backoff with full
 * jitter, only when that cannot work: the browser gave up (any answer but a 200 event stream:
 * refused token, origin or topics, a draining node's 503), or the stream has several topics
 * with positions to resume, or a since the browser would send again stale. The new stream
 * asks for since = the position of every history topic, so nothing is lost or repeated.
 */
export class EventStream {
  #url;
  #opts;
  #topics;
  #es = null;
  #sinceInURL = false; // the current EventSource's URL names positions: its own reconnect would repeat them
  #topicsInURL = 0; // how many topics the current EventSource's URL names
  #state = null;
  #closed = false;
  #listeners = new Map(); // event -> Set<fn>
  #positions = new Map(); // history topic -> {offset, epoch} of the last message delivered
  #token; // undefined: fetch before the next EventSource
  #attempt = 0;
  #timer = null;
  #openedAt = 0;
  #reason = ''; // why the server ended the stream (its close event), for 'reconnecting'

  constructor(url, opts = {}) {
    const { topics = [], last = 0, since = null } = opts;
    const list = typeof topics === 'string' ? topics.split(',') : [...topics];
    if (list.length === 0) throw new SubsockError('bad_request', 'sse needs topics');
    for (const t of list) {
      const why = validTopic(t) ?? (t.includes(',') ? `topic ${JSON.stringify(t)} has a comma, which /sse?topics= cannot carry` : null);
      if (why) throw new SubsockError('invalid_topic', why);
    }
    if (!Number.isSafeInteger(last) || last < 0) throw new SubsockError('bad_request', `last must be a whole number >= 0, not ${last}`);
    this.#topics = [...new Set(list)];
    for (const [t, p] of Object.entries(since ?? {})) {
      if (!this.#topics.includes(t)) throw new SubsockError('bad_request', `since names ${JSON.stringify(t)}, which is not one of the topics`);
      if (!validPosition(p)) throw new SubsockError('bad_request', `since.${t} must be {offset, epoch} as position() returns it`);
      this.#positions.set(t, { offset: p.offset, epoch: p.epoch });
    }
    this.#url = url;
    this.#opts = { ...opts, last, backoff: { ...defaults.backoff, ...(opts.backoff || {}) } };
    if (typeof opts.token === 'string') this.#token = opts.token;
    // Open on a microtask so listeners added right after sse() see the first 'connecting'.
    queueMicrotask(() => this.#open());
  }

  /** The current state: connecting, open, reconnecting or closed. */
  get state() {
    return this.#state;
  }

  /** The stream's topics. */
  topics() {
    return [...this.#topics];
  }

  /**
   * on registers fn for an event and returns a function that removes it.
   * 'message': fn(data, topic, {offset, epoch}) — as a WebSocket client's subscribe handler:
   *   offset and epoch on history topics, undefined on others. Each offset comes once, in order.
   * 'lost': fn({topic, offset, epoch}) — messages of a history topic were lost for good: the
   *   position asked for is gone (another epoch, or no longer held), or the stream skipped
   *   offsets. Delivery continues after offset; the application should reload its state.
   * 'state': fn(state, detail) — detail has {attempt, delay, reason} when reconnecting; delay is
   *   null while the browser reconnects by itself (after the server's retry hint).
   * 'subscribed': fn(topics) — the node answered 200: the topics are live, messages flow.
   * 'join', 'leave': fn({topic, client, user}) — another connection subscribed to, or left, one
   *   of the topics that has join-leave events (the node's -join-leave), on any node.
   * 'unsubscribed': fn({topic}) — the server removed the topic from the stream (a backend asked
   *   it to): it is dropped from topics(), and the next stream does not ask for it. With no
   *   topic left the stream closes.
   * 'disconnected': fn({reason}) — the server ended the stream because a backend disconnected
   *   the client: no reconnect; the 'state' event that follows is 'closed'.
   * 'error': fn(SubsockError) — the browser gave up on the stream (it does not say why: an HTTP
   *   status, a CORS refusal, a network failure), token failures, undecodable events.
   */
  on(event, fn) {
    if (typeof fn !== 'function') throw new TypeError('subsock: on() needs a function');
    let set = this.#listeners.get(event);
    if (!set) this.#listeners.set(event, (set = new Set()));
    set.add(fn);
    return () => this.off(event, fn);
  }

  off(event, fn) {
    this.#listeners.get(event)?.delete(fn);
  }

  /** position returns {offset, epoch} of the last message delivered on a history topic, else null. */
  position(topic) {
    const p = this.#positions.get(topic);
    return p ? { offset: p.offset, epoch: p.epoch } : null;
  }

  /** close ends the stream: no reconnect. */
  close() {
    this.#shutdown({});
  }

  #shutdown(detail) {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#drop();
    this.#setState(State.CLOSED, detail);
  }

  async #open() {
    if (this.#closed) return;
    this.#setState(State.CONNECTING, { attempt: this.#attempt });
    try {
      if (this.#token === undefined && typeof this.#opts.token === 'function') this.#token = await this.#opts.token();
    } catch (e) {
      this.#emit('error', new SubsockError('token', `token function failed: ${e?.message ?? e}`));
      return this.#reopen('no token');
    }
    if (this.#closed) return;
    let es;
    const url = this.#streamURL();
    try {
      es = new EventSource(url, { withCredentials: this.#opts.withCredentials === true });
    } catch (e) {
      // A malformed URL will not get better: report it and stay down.
      this.#emit('error', new SubsockError('bad_request', e.message));
      this.close();
      return;
    }
    this.#es = es;
    this.#sinceInURL = new URL(url).searchParams.has('since');
    this.#topicsInURL = this.#topics.length;
    es.onopen = () => {
      if (this.#es !== es) return;
      this.#openedAt = Date.now();
      this.#reason = '';
      this.#setState(State.OPEN, {});
      this.#emit('subscribed', this.topics());
    };
    es.onmessage = (ev) => {
      if (this.#es === es) this.#onMessage(ev);
    };
    es.addEventListener('lost', (ev) => {
      if (this.#es === es) this.#onLost(ev);
    });
    es.addEventListener('close', (ev) => {
      if (this.#es !== es) return;
      this.#reason = String(ev.data ?? '');
      if (this.#reason === SSE_DISCONNECTED) {
        // A backend had the server end this client: the browser's reconnect would undo that.
        this.#emit('disconnected', { reason: this.#reason });
        this.#shutdown({ reason: this.#reason });
      }
    });
    for (const name of ['join', 'leave', 'unsubscribed']) {
      es.addEventListener(name, (ev) => {
        if (this.#es === es) this.#onControl(name, ev);
      });
    }
    es.onerror = () => {
      if (this.#es === es) this.#onError(es);
    };
  }

  // #streamURL is the URL of the next EventSource: the topics, the position of every history
  // topic seen so far (the browser's Last-Event-ID dies with its EventSource), last, the token.
  #streamURL() {
    const u = new URL(this.#url, globalThis.location?.href);
    if (u.protocol === 'ws:') u.protocol = 'http:';
    else if (u.protocol === 'wss:') u.protocol = 'https:';
    u.searchParams.set('topics', this.#topics.join(','));
    const since = [...this.#positions].map(([t, p]) => `${t}:${p.epoch}:${p.offset}`);
    if (since.length > 0) u.searchParams.set('since', since.join(','));
    if (this.#opts.last > 0) u.searchParams.set('last', String(this.#opts.last));
    if (this.#token) u.searchParams.set('token', this.#token);
    return u.href;
  }

  #onError(es) {
    if (this.#closed) return;
    const wasOpen = this.#state === State.OPEN;
    const reason = this.#reason || (wasOpen ? 'the stream ended' : 'no stream');
    this.#reason = '';
    if (wasOpen && Date.now() - this.#openedAt >= STABLE_MS) this.#attempt = 0;
    if (es.readyState === EventSource.CLOSED) {
      // The browser gives up for good on any answer but a 200 event stream; a refused token
      // may be stale, so ask for a fresh one.
      this.#emit('error', new SubsockError('unavailable', `the browser gave up on ${this.#url} (an HTTP error status or a CORS refusal; EventSource does not say which)`));
      if (typeof this.#opts.token === 'function') this.#token = undefined;
      return this.#reopen(reason);
    }
    // Last-Event-ID resumes one history topic, and a since in the URL would be sent again as
    // it was (as would a topic the server removed): in each case the stream reopens itself,
    // from every position it holds.
    if (this.#sinceInURL || this.#topicsInURL !== this.#topics.length || (this.#topics.length > 1 && this.#positions.size > 0)) return this.#reopen(reason);
    this.#attempt++;
    this.#setState(State.RECONNECTING, { attempt: this.#attempt, delay: null, reason });
  }

  // #reopen replaces the EventSource with a new one after a backoff.
  #reopen(reason) {
    this.#drop();
    const next = reconnectDelay({ attempt: this.#attempt, code: 0, ...this.#opts.backoff });
    this.#attempt = next.attempt;
    this.#setState(State.RECONNECTING, { attempt: this.#attempt, delay: next.delay, reason });
    this.#timer = setTimeout(() => this.#open(), next.delay);
  }

  #drop() {
    const es = this.#es;
    this.#es = null;
    if (es) es.close();
  }

  #onMessage(ev) {
    let m;
    try {
      m = JSON.parse(ev.data);
    } catch (e) {
      this.#emit('error', new SubsockError('bad_request', `undecodable event from the server: ${e.message}`));
      return;
    }
    if (m === null || typeof m !== 'object' || typeof m.topic !== 'string') return;
    let meta = NO_OFFSET;
    if (m.offset != null) {
      meta = this.#track(m.topic, m.offset, epochOf(ev.lastEventId));
      if (meta === null) return;
    }
    this.#emit('message', m.data, m.topic, meta);
  }

  // #track advances topic's position with a message at offset and returns its metadata, or
  // null for a message already delivered. A jump, or another epoch with no lost event first,
  // is reported as lost: the messages in between will not come.
  #track(topic, offset, epoch) {
    const pos = this.#positions.get(topic);
    if (pos && epoch === pos.epoch) {
      if (offset <= pos.offset) return null;
      if (offset > pos.offset + 1) this.#emit('lost', { topic, offset: offset - 1, epoch });
    } else if (pos && epoch !== null) {
      this.#emit('lost', { topic, offset: offset - 1, epoch });
    }
    if (epoch !== null && this.#topics.includes(topic)) this.#positions.set(topic, { offset, epoch });
    return { offset, epoch: epoch ?? undefined };
  }

  // #onControl handles a join, leave or unsubscribed event.
  #onControl(name, ev) {
    let m;
    try {
      m = JSON.parse(ev.data);
    } catch (e) {
      this.#emit('error', new SubsockError('bad_request', `undecodable ${name} event from the server: ${e.message}`));
      return;
    }
    if (m === null || typeof m !== 'object' || typeof m.topic !== 'string' || !this.#topics.includes(m.topic)) return;
    if (name !== 'unsubscribed') {
      this.#emit(name, { topic: m.topic, client: m.client ?? '', user: m.user ?? '' });
      return;
    }
    this.#topics = this.#topics.filter((t) => t !== m.topic);
    this.#positions.delete(m.topic);
    this.#emit('unsubscribed', { topic: m.topic });
    if (this.#topics.length === 0) this.close();
  }

  #onLost(ev) {
    let m;
    try {
      m = JSON.parse(ev.data);
    } catch (e) {
      this.#emit('error', new SubsockError('bad_request', `undecodable lost event from the server: ${e.message}`));
      return;
    }
    if (m === null || typeof m !== 'object' || typeof m.topic !== 'string') return;
    const p = { offset: m.offset, epoch: m.epoch };
    if (validPosition(p) && this.#topics.includes(m.topic)) this.#positions.set(m.topic, p);
    this.#emit('lost', { topic: m.topic, offset: m.offset, epoch: m.epoch });
  }

  #setState(state, detail) {
    this.#state = state;
    this.#emit('state', state, detail);
  }

  #emit(event, ...args) {
    const set = this.#listeners.get(event);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(...args);
      } catch (e) {
        report(e);
      }
    }
  }
}

// epochOf returns the epoch of an event id EPOCH:OFFSET, or null.
function epochOf(id) {
  const j = typeof id === 'string' ? id.lastIndexOf(':') : -1;
  return j > 0 ? id.slice(0, j) : null;
}
