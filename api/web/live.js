// Live updates for one auction: a WebSocket first, Server-Sent Events as the fallback.
//
// - WebSocket `/v1/auctions/{id}/ws?after=SEQ&token=TOKEN`: events in, bids out
//   ({"type":"bid","request_id",...} → {"type":"bid_result","request_id","status","body"}).
// - If the socket fails or drops WS_FAILURES_BEFORE_SSE times in a row without staying
//   up, we switch to EventSource `/v1/auctions/{id}/events?after=SEQ` and bid over HTTP.
// - Every reconnect resumes with after=<last seq seen>. seq is gapless per auction, so a
//   jump means events were missed: onGap() lets the page refetch the auction and history.
// - Bids over the socket carry an idempotency key; if the answer does not come (socket
//   dropped, timeout) the same bid is retried over HTTP with the same key, so it can never
//   be placed twice.
//
// States reported through onState: 'connecting', 'ws', 'sse', 'reconnecting'.

import { requestRaw, newIdempotencyKey } from './api.js';

const WS_FAILURES_BEFORE_SSE = 3;
const WS_STABLE_MS = 5000;
const BID_TIMEOUT_MS = 8000;
const FINAL_KINDS = new Set(['closed', 'cancelled']);
const EVENT_KINDS = [
  'created', 'opened', 'bid_accepted', 'extended', 'closed', 'cancelled', 'reassigned',
  'sealed_bid', 'joined', 'round_started', 'round_completed',
];

export class LiveFeed {
  /**
   * @param {object} o
   * @param {number} o.auctionId
   * @param {number} o.after   newest seq already reflected in the page
   * @param {string|null} o.token
   * @param {(e: object) => void} o.onEvent
   * @param {(state: string) => void} o.onState
   * @param {() => void} o.onGap
   */
  constructor({ auctionId, after, token, onEvent, onState, onGap, preferSse = false }) {
    this.id = auctionId;
    this.last = after ?? 0;
    this.token = token;
    this.onEvent = onEvent;
    this.onState = onState;
    this.onGap = onGap;
    this.mode = preferSse || typeof WebSocket !== 'function' ? 'sse' : 'ws';
    this.wsFailures = 0;
    this.backoff = 500;
    this.state = 'connecting';
    this.ended = false;
    this.stopped = false;
    this.pending = new Map();
    this.nextRequest = 1;
    this.ws = null;
    this.es = null;
    this.timer = null;
    this.onOnline = () => {
      if (this.state === 'reconnecting') this.reconnectNow();
    };
  }

  start() {
    window.addEventListener('online', this.onOnline);
    this.connect();
    return this;
  }

  stop() {
    this.stopped = true;
    window.removeEventListener('online', this.onOnline);
    clearTimeout(this.timer);
    this.closeTransports();
    for (const p of this.pending.values()) p.fallback();
    this.pending.clear();
  }

  /** The page refetched everything up to `seq`: ignore events at or before it. */
  resync(seq) {
    if (seq > this.last) this.last = seq;
  }

  setState(s) {
    if (this.state === s) return;
    this.state = s;
    this.onState?.(s);
  }

  closeTransports() {
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.onopen = ws.onclose = ws.onerror = ws.onmessage = null;
      try {
        ws.close();
      } catch {
        /* ignore */
      }
    }
    if (this.es) {
      this.es.close();
      this.es = null;
    }
  }

  connect() {
    if (this.stopped) return;
    this.closeTransports();
    if (this.mode === 'ws') this.connectWs();
    else this.connectSse();
  }

  reconnectNow() {
    clearTimeout(this.timer);
    this.backoff = 500;
    this.connect();
  }

  scheduleReconnect() {
    if (this.stopped) return;
    this.setState('reconnecting');
    clearTimeout(this.timer);
    const delay = this.backoff * (0.75 + Math.random() * 0.5);
    this.backoff = Math.min(this.backoff * 2, 15000);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  // ------------------------------------------------------------ WebSocket

  connectWs() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const q = new URLSearchParams({ after: String(this.last) });
    if (this.token) q.set('token', this.token);
    let ws;
    try {
      ws = new WebSocket(`${proto}//${location.host}/v1/auctions/${this.id}/ws?${q}`);
    } catch {
      this.wsFailed();
      return;
    }
    this.ws = ws;
    let openedAt = 0;
    ws.onopen = () => {
      openedAt = Date.now();
      this.backoff = 500;
      this.setState('ws');
    };
    ws.onmessage = (m) => {
      let msg;
      try {
        msg = JSON.parse(m.data);
      } catch {
        return;
      }
      if (msg.type === 'event') this.handleEvent(msg);
      else if (msg.type === 'bid_result') this.resolveBid(msg);
      else if (msg.type === 'error') console.warn('gavel ws:', msg.message);
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      // Bids in flight on this socket: retry over HTTP with the same idempotency key.
      for (const p of this.pending.values()) p.fallback();
      this.pending.clear();
      if (this.stopped) return;
      this.setState('reconnecting');
      const stable = openedAt && Date.now() - openedAt > WS_STABLE_MS;
      if (stable) {
        this.wsFailures = 0;
        this.scheduleReconnect();
        return;
      }
      // A socket that would not stay up counts against WebSockets only if the node
      // itself answers (a proxy that drops upgrades); a node that is down is just down.
      nodeUp().then((up) => {
        if (this.stopped || this.ws || this.es) return;
        if (up) this.wsFailures += 1;
        if (this.wsFailures >= WS_FAILURES_BEFORE_SSE) {
          this.mode = 'sse';
          this.backoff = 500;
          this.connect();
        } else {
          this.scheduleReconnect();
        }
      });
    };
    ws.onerror = () => {
      /* onclose follows and decides */
    };
  }

  wsFailed() {
    this.wsFailures += 1;
    if (this.wsFailures >= WS_FAILURES_BEFORE_SSE) {
      this.mode = 'sse';
      this.connect();
    } else {
      this.scheduleReconnect();
    }
  }

  // ------------------------------------------------------------ SSE

  connectSse() {
    if (typeof EventSource !== 'function') {
      this.setState('reconnecting');
      return;
    }
    const es = new EventSource(`/v1/auctions/${this.id}/events?after=${this.last}`);
    this.es = es;
    es.onopen = () => {
      this.backoff = 500;
      this.setState('sse');
    };
    const onMessage = (m) => {
      try {
        this.handleEvent(JSON.parse(m.data));
      } catch {
        /* ignore malformed */
      }
    };
    for (const kind of EVENT_KINDS) es.addEventListener(kind, onMessage);
    es.onmessage = onMessage;
    es.onerror = () => {
      if (this.es !== es) return;
      if (this.ended) {
        // The stream ends after the final event; do not let the browser reconnect.
        es.close();
        this.es = null;
        return;
      }
      if (es.readyState === EventSource.CLOSED) {
        this.es = null;
        this.scheduleReconnect();
      } else {
        // The browser retries by itself, sending Last-Event-ID.
        this.setState('reconnecting');
      }
    };
  }

  // ------------------------------------------------------------ events

  handleEvent(e) {
    if (typeof e.seq !== 'number' || e.seq <= this.last) return;
    if (e.seq > this.last + 1 && this.last > 0) {
      // Missed events: have the page reload the auction; keep going from here.
      this.last = e.seq;
      this.onGap?.();
      if (FINAL_KINDS.has(e.kind)) this.markEnded();
      return;
    }
    this.last = e.seq;
    if (this.state !== 'ws' && this.state !== 'sse') this.setState(this.ws ? 'ws' : 'sse');
    if (FINAL_KINDS.has(e.kind)) this.markEnded();
    try {
      this.onEvent?.(e);
    } catch (err) {
      console.error(err);
    }
  }

  markEnded() {
    this.ended = true;
    // The SSE stream ends after the final event; close it before the browser retries.
    if (this.es) {
      this.es.close();
      this.es = null;
    }
  }

  // ------------------------------------------------------------ bids

  /**
   * Places a bid ({amount} and/or {max_amount}). Resolves to {status, body} exactly as the
   * HTTP route answers; never rejects on a refusal.
   */
  bid(body) {
    const key = newIdempotencyKey();
    const http = () => requestRaw('POST', `/v1/auctions/${this.id}/bids`, { auth: true, body, idempotencyKey: key });
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || !this.token) return http().then(normalize);
    const request_id = `r${this.nextRequest++}`;
    return new Promise((resolve) => {
      let done = false;
      const finish = (v) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.pending.delete(request_id);
        resolve(v);
      };
      const fallback = () => http().then(normalize).then(finish, (e) => finish({ status: 0, body: { error: { code: 'network', message: e.message } } }));
      const timer = setTimeout(fallback, BID_TIMEOUT_MS);
      this.pending.set(request_id, { finish, fallback });
      try {
        ws.send(JSON.stringify({ type: 'bid', request_id, idempotency_key: key, ...body }));
      } catch {
        fallback();
      }
    });
  }

  resolveBid(msg) {
    const p = this.pending.get(msg.request_id);
    if (!p) return;
    p.finish({ status: msg.status, body: msg.body, via: 'ws' });
  }
}

async function nodeUp() {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), 3000);
  try {
    const res = await fetch('/health', { cache: 'no-store', signal: ctl.signal });
    return res.ok;
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}

function normalize(r) {
  // requestRaw reports 200 for any 2xx; a bid's success is a 201.
  if (r.status === 200) return { status: 201, body: r.body, via: 'http' };
  return { ...r, via: 'http' };
}
