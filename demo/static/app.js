// The demo page: a ticker and a chat on the browser client (two single-purpose connections,
// each with its own policy), and the node's own figures from GET /stats, sampled every second.
// The ticker only receives, so it can run over a WebSocket or over Server-Sent Events (GET
// /sse): a toggle switches it, and ?ticker=sse opens the page that way.
import { connect, sse, EventStream } from './js/subsock.js';

const params = new URLSearchParams(location.search);
const protocol = params.get('protocol') === 'msgpack' ? 'msgpack' : 'json';
// A demo wants to come back quickly after a node restart; production pages keep the defaults.
const backoff = { min: 250, max: 5000 };
// A node that requires tokens: open the page with ?token=<jwt> (it must allow demo.*).
const token = params.get('token') || undefined;
const WINDOW = 300; // chart samples kept: 5 minutes at 1 per second
const FIRST_WINDOW = 60; // a fresh page shows the last minute and widens to WINDOW as samples come
const $ = (id) => document.getElementById(id);

const clock = (t = new Date()) => t.toLocaleTimeString([], { hour12: false });
const fmt = new Intl.NumberFormat();

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') e.className = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

function prepend(list, item, max) {
  list.prepend(item);
  while (list.children.length > max) list.lastElementChild.remove();
}

// --- events: what this page's connections went through -----------------------------------

function logEvent(text, kind = '') {
  prepend($('events'), el('li', { class: kind }, el('time', {}, clock()), el('span', {}, text)), 100);
}

// watch mirrors a client's state (a WebSocket client or an SSE stream) in its header pill and
// the events list.
function watch(name, client) {
  const pill = $('status-' + name);
  const state = pill.querySelector('.state');
  const detail = pill.querySelector('.detail');
  let opens = 0;
  let countdown = null;
  // live: the server confirmed the subscription, so messages flow (set again after each reconnect).
  client.on('subscribed', () => { pill.dataset.live = 'true'; });
  client.on('state', (s, d) => {
    pill.dataset.state = s;
    pill.dataset.live = 'false';
    state.textContent = s;
    clearInterval(countdown);
    detail.textContent = '';
    if (s === 'open') {
      opens++;
      pill.dataset.opens = String(opens);
      const via = client instanceof EventStream ? 'sse' : client.protocol;
      detail.textContent = via.replace('subsock.v1.', '') + (opens > 1 ? ` · ${opens - 1} reconnect${opens > 2 ? 's' : ''}` : '');
      logEvent(`${name}: open (${via})`, 'good');
    } else if (s === 'reconnecting' && d.delay === null) {
      // An SSE stream the browser reconnects by itself, after the node's retry hint.
      detail.textContent = 'browser retries';
      logEvent(`${name}: dropped (${d.reason}); the browser reconnects`, 'bad');
    } else if (s === 'reconnecting') {
      const until = Date.now() + d.delay;
      const why = [d.code, d.reason].filter((x) => x !== undefined && x !== '').join(' ');
      const tick = () => { detail.textContent = `retry in ${(Math.max(0, until - Date.now()) / 1000).toFixed(1)}s`; };
      tick();
      countdown = setInterval(tick, 100);
      logEvent(`${name}: dropped (${why}); attempt ${d.attempt} in ${d.delay} ms`, 'bad');
    }
  });
  client.on('error', (e) => logEvent(`${name}: ${e.code} ${e.msg}`, 'bad'));
}

// --- ticker: whatever is published to demo.ticker -----------------------------------------
// One subscription, over a WebSocket client or an SSE stream: both hand onTick the same
// (data, topic, {offset, epoch}).

let ticker = null;
let transport = null; // 'ws' or 'sse'

const tiles = new Map(); // symbol -> {root, price, chg, time, line, history, last}
const MAX_TILES = 12;
let ticks = 0;

function tile(symbol) {
  let t = tiles.get(symbol);
  if (t) return t;
  if (tiles.size >= MAX_TILES) {
    // Keep the screen to the symbols that move: drop the one updated longest ago.
    let oldest = null;
    for (const [s, v] of tiles) if (!oldest || v.at < oldest[1].at) oldest = [s, v];
    oldest[1].root.remove();
    tiles.delete(oldest[0]);
  }
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', '0 0 100 28');
  svg.setAttribute('preserveAspectRatio', 'none');
  const line = document.createElementNS('http://www.w3.org/2000/svg', 'polyline');
  svg.append(line);
  t = {
    price: el('div', { class: 'price' }),
    chg: el('div', { class: 'chg' }, '—'),
    time: el('time'),
    line,
    history: [],
    last: null,
    at: 0,
  };
  t.root = el('div', { class: 'tile', dataset: { symbol } }, el('div', { class: 'sym' }, symbol, t.time), t.price, t.chg, svg);
  $('ticker-empty')?.remove();
  $('ticker').append(t.root);
  tiles.set(symbol, t);
  return t;
}

function showPrice(symbol, price) {
  const t = tile(symbol);
  const prev = t.last;
  t.last = price;
  t.at = performance.now();
  t.price.textContent = price.toFixed(2);
  t.time.textContent = clock();
  if (prev !== null && prev !== 0) {
    const d = price - prev;
    t.chg.className = 'chg ' + (d > 0 ? 'up' : d < 0 ? 'down' : '');
    t.chg.textContent = `${d >= 0 ? '▲ +' : '▼ '}${d.toFixed(2)} (${((d / prev) * 100).toFixed(2)}%)`;
    t.root.classList.remove('flash-up', 'flash-down');
    void t.root.offsetWidth; // restart the flash
    if (d !== 0) t.root.classList.add(d > 0 ? 'flash-up' : 'flash-down');
    setTimeout(() => t.root.classList.remove('flash-up', 'flash-down'), 150);
  }
  t.history.push(price);
  if (t.history.length > 60) t.history.shift();
  const lo = Math.min(...t.history);
  const hi = Math.max(...t.history);
  const span = hi - lo || 1;
  const n = Math.max(t.history.length - 1, 1);
  t.line.setAttribute('points', t.history.map((p, i) => `${((i / n) * 100).toFixed(1)},${(26 - ((p - lo) / span) * 24).toFixed(1)}`).join(' '));
}

function show(value) {
  if (value instanceof Uint8Array) return `<${value.length} bytes>`;
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}

function onTick(data) {
  ticks++;
  $('tick-count').textContent = fmt.format(ticks);
  prepend($('tape'), el('li', {}, el('time', {}, clock()), el('span', { class: 'json' }, show(data))), 20);
  if (data && typeof data === 'object' && typeof data.symbol === 'string' && data.symbol !== '') {
    const price = Number(data.price);
    if (Number.isFinite(price)) showPrice(data.symbol, price);
  }
}

// useTransport replaces the ticker's connection with one over the given transport.
function useTransport(next) {
  if (next === transport) return;
  if (ticker) {
    ticker.close();
    logEvent(`ticker: switched to ${next === 'sse' ? 'Server-Sent Events' : 'WebSocket'}`);
  }
  transport = next;
  if (next === 'sse') {
    ticker = sse('/sse', { topics: ['demo.ticker'], token });
    ticker.on('message', onTick);
    // Only when the node keeps history for demo.ticker (-history 'demo.ticker=...').
    ticker.on('lost', ({ topic, offset }) => logEvent(`ticker: ${topic} lost messages before #${offset + 1}`, 'bad'));
  } else {
    ticker = connect('/ws', { protocol, backoff, token });
    ticker.subscribe('demo.ticker', onTick).catch((e) => {
      if (e.code !== 'closed') logEvent(`ticker: subscribe failed: ${e.code} ${e.msg}`, 'bad');
    });
  }
  watch('ticker', ticker);
  $('status-ticker').title = next === 'sse' ? 'the ticker\'s Server-Sent Events stream (GET /sse, receive only)' : 'the ticker\'s WebSocket (subscribe only)';
  for (const b of document.querySelectorAll('#transport button')) b.setAttribute('aria-pressed', String(b.dataset.transport === next));
  // Keep the choice across reloads.
  const u = new URL(location.href);
  if (next === 'sse') u.searchParams.set('ticker', 'sse');
  else u.searchParams.delete('ticker');
  history.replaceState(null, '', u);
}

for (const b of document.querySelectorAll('#transport button')) b.addEventListener('click', () => useTransport(b.dataset.transport));
useTransport(params.get('ticker') === 'sse' ? 'sse' : 'ws');

$('curl-hint').textContent =
  `curl -X POST '${location.origin}/publish?topic=demo.ticker' \\\n  -H 'Content-Type: application/json' -d '{"symbol":"ACME","price":12.5}'`;

// The demo feed publishes a random walk from this page, over the ticker's own connection, or
// over the chat's while the ticker is an SSE stream (which only receives).
let feed = null;
const walk = { ACME: 12.5, GLOBEX: 48.2, INITECH: 7.9, UMBRELLA: 131.4, HOOLI: 222.0 };
$('feed').addEventListener('click', (ev) => {
  const btn = ev.currentTarget;
  if (feed) {
    clearInterval(feed);
    feed = null;
    btn.setAttribute('aria-pressed', 'false');
    btn.textContent = 'Start demo feed';
    return;
  }
  btn.setAttribute('aria-pressed', 'true');
  btn.textContent = 'Stop demo feed';
  feed = setInterval(() => {
    const syms = Object.keys(walk);
    const s = syms[Math.floor(Math.random() * syms.length)];
    walk[s] = Math.max(0.01, Math.round(walk[s] * (1 + (Math.random() - 0.5) * 0.01) * 100) / 100);
    const via = ticker instanceof EventStream ? chat : ticker;
    via.publish('demo.ticker', { symbol: s, price: walk[s] }).catch((e) => {
      if (e.code === 'closed') return; // the ticker switched transport meanwhile
      logEvent(`feed: ${e.code} ${e.msg}`, 'bad');
      if (feed) btn.click();
    });
  }, 250);
});

// --- chat: publish with ack on its own connection -----------------------------------------
// demo.chat has history on the node (-demo adds the rule unless -history is given): the page
// opens with the last lines, and after a reconnect the client resumes from the last offset
// shown, so a node restart loses no line and shows none twice. It has presence and join-leave
// events too (-demo adds -presence and -join-leave demo.chat unless given): the page shows who
// is in the room, and a line in the chat when someone comes or goes.

const CHAT_LAST = 50; // lines replayed on load
const chat = connect('/ws', { protocol, backoff, token });
watch('chat', chat);

const nameInput = $('chat-name');
nameInput.value = localStorage.getItem('subsock.demo.name') || `guest-${Math.floor(1000 + Math.random() * 9000)}`;
nameInput.addEventListener('change', () => localStorage.setItem('subsock.demo.name', nameInput.value.trim()));
const me = Math.random().toString(36).slice(2); // tells this tab's own messages apart

function hue(s) {
  let h = 0;
  for (const c of s) h = (h * 31 + c.codePointAt(0)) % 360;
  return h;
}

// chatNote adds a line of the page's own to the chat log.
function chatNote(text) {
  const log = $('chat-log');
  log.append(el('li', { class: 'system' }, el('time', {}, clock()), el('span', {}, text)));
  log.scrollTop = log.scrollHeight;
}

// --- who is in the room ------------------------------------------------------------------
// The page asks for demo.chat's members each time its subscription is confirmed (a reconnect
// gets a new client id, and the room may have changed meanwhile) and applies the join and leave
// events from then on. Members are connections: a user with two tabs is there twice. Anonymous
// members have no user, so a member's name comes from the chat lines it sent, which carry its
// client id; until then it is a guest.

const ROOM = 'demo.chat';
const room = new Map(); // client id -> user ('' when anonymous)
const names = new Map(); // client id -> the name on its chat lines
let self = ''; // this page's chat connection's client id
let roomEvents = null; // join and leave events that arrive while the list is being fetched
let roomFetch = 0; // the latest fetch of the list; an older one's answer is dropped

function memberName(client) {
  if (client === self) return nameInput.value.trim() || 'anon';
  return names.get(client) || room.get(client) || `guest ${client.slice(client.lastIndexOf('-') + 1)}`;
}

function renderRoom() {
  const list = $('chat-members');
  if ($('chat-room').dataset.presence === 'off') {
    list.replaceChildren(el('li', { class: 'off' }, 'presence is not enabled on this node (-presence demo.chat)'));
    $('chat-count').textContent = '–';
    return;
  }
  // This page first, then by name.
  const order = [...room.keys()].sort((a, b) => (b === self) - (a === self) || memberName(a).localeCompare(memberName(b)));
  list.replaceChildren(...order.map((client) => {
    const name = memberName(client);
    const li = el('li', { class: client === self ? 'me' : '', dataset: { client }, title: client }, client === self ? `${name} (you)` : name);
    li.style.color = `hsl(${hue(name)} 70% 68%)`;
    return li;
  }));
  $('chat-count').textContent = String(room.size);
}

// applyRoom applies one join or leave; note puts a line in the chat for it.
function applyRoom(kind, { client, user }, note) {
  if (client === self) return;
  if (kind === 'join') room.set(client, user);
  const name = memberName(client);
  if (kind === 'leave') room.delete(client);
  if (note) chatNote(`${name} ${kind === 'join' ? 'joined' : 'left'}`);
  renderRoom();
}

for (const kind of ['join', 'leave']) {
  chat.on(kind, (ev) => {
    if (ev.topic !== ROOM) return;
    roomEvents?.push([kind, ev]);
    applyRoom(kind, ev, true);
  });
}

async function refreshRoom() {
  const box = $('chat-room');
  const ticket = ++roomFetch;
  roomEvents = [];
  try {
    const [me, members] = await Promise.all([chat.info(), chat.presence(ROOM)]);
    if (ticket !== roomFetch) return;
    self = me.client;
    room.clear();
    for (const m of members) room.set(m.client, m.user);
    // The list may predate an event that came meanwhile: apply them again, in order.
    for (const [kind, ev] of roomEvents) applyRoom(kind, ev, false);
    box.dataset.presence = 'on';
    box.dataset.stale = 'false';
  } catch (e) {
    if (e.code === 'not_enabled') {
      box.dataset.presence = 'off';
      logEvent('chat: presence is not enabled on demo.chat (start the node with -presence demo.chat)', 'bad');
    } else if (e.code !== 'closed' && e.code !== 'unavailable') {
      logEvent(`chat: presence: ${e.code} ${e.msg}`, 'bad');
    }
  } finally {
    if (ticket === roomFetch) {
      roomEvents = null;
      renderRoom();
    }
  }
}

chat.on('subscribed', (topics) => {
  if (topics.includes(ROOM)) refreshRoom();
});
chat.on('state', (s) => {
  if (s !== 'open') $('chat-room').dataset.stale = 'true';
});
nameInput.addEventListener('input', renderRoom);

chat.on('recover', ({ topic, recovered, offset }) => {
  if (recovered) {
    logEvent(`chat: ${topic} recovered up to #${offset}`, 'good');
    return;
  }
  // The node no longer holds what was missed (a memory node restarted, or too much happened
  // meanwhile): say so where the lines are missing.
  logEvent(`chat: ${topic} not recovered, lines lost before #${(offset ?? 0) + 1}`, 'bad');
  chatNote('some lines were lost here');
});

chat.subscribe('demo.chat', (m, _topic, { offset }) => {
  if (!m || typeof m !== 'object') return;
  const name = String(m.name ?? 'anon').slice(0, 24);
  if (typeof m.client === 'string' && m.client !== self && names.get(m.client) !== name) {
    names.set(m.client, name);
    if (room.has(m.client)) renderRoom();
  }
  const who = el('span', { class: 'who' }, name);
  who.style.color = `hsl(${hue(name)} 70% 68%)`;
  const at = typeof m.ts === 'number' ? new Date(m.ts) : new Date();
  const log = $('chat-log');
  const stick = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
  const li = el('li', { class: m.from === me ? 'mine' : '' }, el('time', {}, clock(at)), who, el('span', { class: 'text' }, String(m.text ?? '')));
  if (offset !== undefined) li.dataset.offset = String(offset);
  log.append(li);
  while (log.children.length > 200) log.firstElementChild.remove();
  if (stick) log.scrollTop = log.scrollHeight;
}, { last: CHAT_LAST }).catch((e) => logEvent(`chat: subscribe failed: ${e.code} ${e.msg}`, 'bad'));

$('chat-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const input = $('chat-text');
  const text = input.value.trim();
  if (!text) return;
  const name = nameInput.value.trim() || 'anon';
  input.value = '';
  $('chat-error').textContent = '';
  try {
    await chat.publish('demo.chat', { name, text, ts: Date.now(), from: me, client: self }, { ack: true });
  } catch (e) {
    $('chat-error').textContent = `not sent (${e.code}): ${e.msg}`;
    input.value = text;
  }
});

// --- node figures: GET /stats every second, rates from deltas -----------------------------

$('node-addr').textContent = location.host;

const series = {
  labels: [],
  conns: [],
  subs: [],
  inRate: [],
  outRate: [],
};
{
  const now = Date.now();
  for (let i = FIRST_WINDOW - 1; i >= 0; i--) {
    series.labels.push(clock(new Date(now - i * 1000)));
    for (const k of ['conns', 'subs', 'inRate', 'outRate']) series[k].push(null);
  }
}

let leadIn = FIRST_WINDOW; // empty samples in front, each replaced by a real one

function push(label, conns, subs, inRate, outRate) {
  const v = { labels: label, conns, subs, inRate, outRate };
  let drop = series.labels.length >= WINDOW;
  if (leadIn > 0) {
    leadIn--;
    drop = true;
  }
  for (const k of Object.keys(v)) {
    if (drop) series[k].shift();
    series[k].push(v[k]);
  }
}

const charts = [];
function makeCharts() {
  const Chart = window.Chart;
  if (!Chart) {
    logEvent('charts unavailable: vendor/chart.umd.min.js did not load', 'bad');
    return;
  }
  Chart.defaults.color = '#8593ad';
  Chart.defaults.borderColor = '#1b2640';
  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  const common = {
    animation: false,
    responsive: true,
    maintainAspectRatio: false,
    interaction: { mode: 'index', intersect: false },
    elements: { point: { radius: 0, hitRadius: 6 }, line: { borderWidth: 2, tension: 0.25, cubicInterpolationMode: 'monotone' } },
    plugins: { legend: { position: 'top', align: 'end', labels: { boxWidth: 10, boxHeight: 10 } } },
    scales: {
      x: { ticks: { maxTicksLimit: 6, maxRotation: 0, autoSkip: true }, grid: { display: false } },
      y: { beginAtZero: true, ticks: { precision: 0, maxTicksLimit: 6 } },
    },
  };
  const line = (label, data, color, fill, yAxisID = 'y') => ({
    label, data, borderColor: color, backgroundColor: color + '22', fill, spanGaps: false, yAxisID,
  });
  // Subscriptions usually outnumber connections many times over: they get their own axis.
  charts.push(new Chart($('chart-conns'), {
    type: 'line',
    data: {
      labels: series.labels,
      datasets: [line('connections', series.conns, '#22c55e', true), line('subscriptions (right axis)', series.subs, '#f59e0b', false, 'y1')],
    },
    options: {
      ...common,
      scales: {
        ...common.scales,
        y1: { position: 'right', beginAtZero: true, grid: { display: false }, ticks: { precision: 0, maxTicksLimit: 6, color: '#f59e0b' } },
      },
    },
  }));
  charts.push(new Chart($('chart-rates'), {
    type: 'line',
    data: {
      labels: series.labels,
      datasets: [line('in / s', series.inRate, '#a78bfa', false), line('out / s', series.outRate, '#38bdf8', true)],
    },
    options: common,
  }));
}

let prev = null; // {t, messagesIn, messagesOut}

// STATS maps each figure on the page (its element is #kpi-<key>) to its field in GET /stats.
const STATS = {
  Connections: 'connections',
  SSEStreams: 'sse_streams',
  TCPConns: 'tcp_connections',
  Subscriptions: 'subscriptions',
  Topics: 'topics',
  BrokerTopics: 'broker_topics',
  MessagesIn: 'messages_in',
  MessagesOut: 'messages_out',
  SlowCloses: 'slow_consumer_closes',
  Heartbeat: 'heartbeat_closes',
};
let peakOut = 0;

function setKPI(key, value) {
  const node = $('kpi-' + key);
  if (!node) return;
  node.textContent = value === null || value === undefined ? '–' : fmt.format(value);
  if (typeof value === 'number' && value > 0) node.dataset.nonzero = '';
}

async function sample() {
  const label = clock();
  let s;
  try {
    const r = await fetch('/stats', { cache: 'no-store' });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    s = await r.json();
  } catch {
    // A gap in the charts shows the node was unreachable; the next sample restarts the rates.
    prev = null;
    setHealth('unreachable', 'GET /stats failed');
    push(label, null, null, null, null);
    return;
  }
  const t = performance.now();
  let inRate = null;
  let outRate = null;
  // A counter that went down means the node restarted: that second has no rate.
  if (prev && s.messages_in >= prev.messagesIn && s.messages_out >= prev.messagesOut) {
    const dt = (t - prev.t) / 1000;
    inRate = Math.round((s.messages_in - prev.messagesIn) / dt);
    outRate = Math.round((s.messages_out - prev.messagesOut) / dt);
  }
  prev = { t, messagesIn: s.messages_in, messagesOut: s.messages_out };
  for (const [k, field] of Object.entries(STATS)) setKPI(k, s[field]);
  setKPI('in', inRate);
  setKPI('out', outRate);
  // Fan-out: messages delivered per message published, over the node's life.
  $('fanout').textContent = s.messages_in > 0 ? `×${(s.messages_out / s.messages_in).toFixed(1)}` : '–';
  if (outRate !== null && outRate > peakOut) {
    peakOut = outRate;
    $('peak-out').textContent = fmt.format(peakOut);
  }
  push(label, s.connections, s.subscriptions, inRate, outRate);
}

function setHealth(state, title) {
  const b = $('health');
  b.dataset.health = state;
  b.textContent = state === 'ok' ? 'healthy' : state;
  b.title = title;
}

async function health() {
  try {
    const r = await fetch('/healthz', { cache: 'no-store' });
    const h = await r.json();
    setHealth(h.status === 'ok' ? 'ok' : h.status, h.broker ? `broker: ${h.broker}` : `GET /healthz: ${h.status}`);
  } catch {
    setHealth('unreachable', 'GET /healthz failed');
  }
}

makeCharts();
let busy = false;
async function tick() {
  if (busy) return; // a slow node must not pile up requests
  busy = true;
  try {
    await sample();
    for (const c of charts) c.update('none');
  } finally {
    busy = false;
  }
}
tick();
setInterval(tick, 1000);
health();
setInterval(health, 5000);

// For debugging from the console: the two clients.
window.subsockDemo = {
  get ticker() {
    return ticker;
  },
  chat,
};
