// A stand-in for the page's WebSocket, so that cases can do what a network does to a client:
// cut a connection (socketsOf(tag)[0].close()), and lose, repeat or alter the frames it
// receives (tap). subsock.js looks WebSocket up at each dial, so installing this once, before
// any client connects, covers every socket of the page; without a tap it changes nothing.

const Native = globalThis.WebSocket;
const open = new Set();
let filter = null;

/**
 * tap sets fn(frame) => frames to stand between every socket and its client for JSON (text)
 * frames: the client receives the frames fn returns instead of the one that arrived. null
 * removes it.
 */
export function tap(fn) {
  filter = fn;
}

/** socketsOf returns the open sockets whose URL has ?tag=tag. */
export function socketsOf(tag) {
  return [...open].filter((ws) => new URL(ws.url).searchParams.get('tag') === tag && ws.readyState === Native.OPEN);
}

class SpyWebSocket extends Native {
  constructor(...args) {
    super(...args);
    open.add(this);
    this.addEventListener('close', () => open.delete(this));
  }

  get onmessage() {
    return super.onmessage;
  }

  set onmessage(fn) {
    super.onmessage = typeof fn !== 'function' ? fn : (ev) => {
      if (filter === null || typeof ev.data !== 'string') return fn(ev);
      for (const data of filter(ev.data)) fn(new MessageEvent('message', { data }));
    };
  }
}

globalThis.WebSocket = SpyWebSocket;
