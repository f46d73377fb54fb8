// The JSON API client and the login session.
//
// Every call goes to this origin's /v1/... routes. The account token lives in
// sessionStorage only (this tab; never localStorage or cookies) and is sent as
// `Authorization: Bearer` on writes and on the few reads that need it. Errors come back
// as ApiError with the server's stable `code` and human `message` (and details such as
// `min_next_bid`).

import { randomId } from './format.js';

const TOKEN_KEY = 'gavel.token';
const ACCOUNT_KEY = 'gavel.account';

export class ApiError extends Error {
  constructor(status, code, message, details = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

// ---------------------------------------------------------------- session

const listeners = new Set();

function readStorage(key) {
  try {
    return sessionStorage.getItem(key);
  } catch {
    return null;
  }
}

export const session = {
  token: readStorage(TOKEN_KEY),
  account: (() => {
    try {
      return JSON.parse(readStorage(ACCOUNT_KEY) || 'null');
    } catch {
      return null;
    }
  })(),
};

export function onSessionChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function emit(reason) {
  for (const fn of listeners) {
    try {
      fn(session, reason);
    } catch (e) {
      console.error(e);
    }
  }
}

export function setSession(token, account) {
  session.token = token;
  session.account = account;
  try {
    sessionStorage.setItem(TOKEN_KEY, token);
    sessionStorage.setItem(ACCOUNT_KEY, JSON.stringify(account));
  } catch {
    /* storage may be disabled; the session then lasts until reload */
  }
  emit('login');
}

export function clearSession(reason = 'logout') {
  session.token = null;
  session.account = null;
  try {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(ACCOUNT_KEY);
  } catch {
    /* ignore */
  }
  emit(reason);
}

export function hasRole(role) {
  return !!session.account?.roles?.includes(role);
}

// ---------------------------------------------------------------- server clock

let clockOffset = 0;

/** The server's clock, estimated from the Date header (second resolution). */
export function serverNow() {
  return Date.now() + clockOffset;
}

function noteServerDate(res) {
  const date = res.headers.get('date');
  if (!date) return;
  const server = Date.parse(date);
  if (Number.isNaN(server)) return;
  // The header is truncated to the second: a server 0.5 s "behind" is noise.
  const diff = server + 500 - Date.now();
  clockOffset = Math.abs(diff) > 2000 ? diff : 0;
}

// ---------------------------------------------------------------- requests

/**
 * request('GET', '/v1/auctions', {auth, body, idempotencyKey, signal, token}) → parsed JSON.
 * Throws ApiError on a non-2xx answer or a network failure (status 0, code "network").
 */
export async function request(method, path, opts = {}) {
  const headers = { Accept: 'application/json' };
  const token = opts.token ?? (opts.auth ? session.token : null);
  if (opts.auth && !token) {
    throw new ApiError(401, 'unauthenticated', 'Log in first: this needs an account token.');
  }
  if (token) headers.Authorization = `Bearer ${token}`;
  if (opts.idempotencyKey) headers['Idempotency-Key'] = opts.idempotencyKey;
  let body;
  if (opts.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body, signal: opts.signal, cache: 'no-store' });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', 'Cannot reach the node. Check your connection; retrying is safe.');
  }
  noteServerDate(res);
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!res.ok) {
    const err = data?.error ?? {};
    const { code, message, ...details } = err;
    const apiErr = new ApiError(res.status, code ?? `http_${res.status}`, message ?? `${res.status} ${res.statusText}`, details);
    // A token that stopped working (rotated, disabled) ends the session, but only the
    // one we sent: a login attempt with a new token must not log the old one out.
    if (res.status === 401 && code === 'unauthenticated' && token && token === session.token && !opts.token) {
      clearSession('expired');
    }
    throw apiErr;
  }
  return data;
}

/** A bid or other write's answer as {status, body}, never throwing on an HTTP error. */
export async function requestRaw(method, path, opts = {}) {
  try {
    const body = await request(method, path, opts);
    return { status: 200, body };
  } catch (e) {
    if (e instanceof ApiError) {
      return { status: e.status, body: { error: { code: e.code, message: e.message, ...e.details } } };
    }
    throw e;
  }
}

export const newIdempotencyKey = () => `web-${randomId(16)}`;

// ---------------------------------------------------------------- routes

export const api = {
  account: (token) => request('GET', '/v1/account', { token }),
  listAuctions: ({ status, limit = 100, after, archived, signal } = {}) => {
    const q = new URLSearchParams();
    if (status) q.set('status', status);
    if (archived != null) q.set('archived', String(archived));
    if (limit) q.set('limit', String(limit));
    if (after != null) q.set('after', String(after));
    return request('GET', `/v1/auctions?${q}`, { signal });
  },
  auction: (id, { stale = false, signal } = {}) =>
    request('GET', `/v1/auctions/${id}${stale ? '?consistency=stale' : ''}`, { signal }),
  bids: (id, { stale = false, signal } = {}) =>
    request('GET', `/v1/auctions/${id}/bids${stale ? '?consistency=stale' : ''}`, { signal }),
  result: (id) => request('GET', `/v1/auctions/${id}/result`, { auth: true }),
  createAuction: (body, idempotencyKey) => request('POST', '/v1/auctions', { auth: true, body, idempotencyKey }),
  bid: (id, body, idempotencyKey) => request('POST', `/v1/auctions/${id}/bids`, { auth: true, body, idempotencyKey }),
  buy: (id) => request('POST', `/v1/auctions/${id}/buy`, { auth: true, idempotencyKey: newIdempotencyKey() }),
  cancel: (id) => request('POST', `/v1/auctions/${id}/cancel`, { auth: true, idempotencyKey: newIdempotencyKey() }),
  join: (id) => request('POST', `/v1/auctions/${id}/join`, { auth: true, idempotencyKey: newIdempotencyKey() }),
  start: (id) => request('POST', `/v1/auctions/${id}/start`, { auth: true, idempotencyKey: newIdempotencyKey() }),
  cluster: (signal) => request('GET', '/v1/cluster', { signal }),
  workers: (signal) => request('GET', '/v1/workers', { signal }),
  metricsHistory: (signal) => request('GET', '/v1/metrics/history', { signal }),
  ready: async (signal) => {
    try {
      const res = await fetch('/ready', { cache: 'no-store', signal });
      return { ok: res.ok, body: await res.json().catch(() => null) };
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      return { ok: false, body: null };
    }
  },
};

/**
 * Friendly text for an API error. Amounts in messages are minor units; where the error
 * carries them as fields, say them in major units.
 */
export function describeError(e, fmtMoney) {
  if (!(e instanceof ApiError)) return e?.message ?? String(e);
  const d = e.details ?? {};
  switch (e.code) {
    case 'bid_too_low':
      return d.min_next_bid != null ? `Bid too low: the minimum is ${fmtMoney(d.min_next_bid)}.` : e.message;
    case 'over_budget':
      return d.budget != null
        ? `Over your budget: this would put ${fmtMoney(d.exposure)} at stake; your budget is ${fmtMoney(d.budget)}.`
        : e.message;
    case 'seller_cannot_bid':
      return 'You are the seller: you cannot bid on your own auction.';
    case 'forbidden':
      return `Not allowed: ${e.message}`;
    case 'unauthenticated':
      return e.status === 401 && e.message ? `Not logged in or token no longer valid: ${e.message}` : e.message;
    case 'rate_limited':
      return 'Too many requests right now; wait a second and try again.';
    case 'no_leader':
      return 'The cluster is electing a leader; try again in a moment.';
    default:
      return e.message;
  }
}
