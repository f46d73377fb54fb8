// Formatting and DOM helpers shared by every view.
//
// - h()/svg(): build DOM nodes. Children that are strings become text nodes, so user
//   data (titles, names) can never be interpreted as HTML.
// - Money: the API counts integer minor units (cents). formatMoney(1250) === "12.50";
//   parseMoney("12.5") === 1250, by string arithmetic (no float rounding).
// - Times: RFC 3339 strings in, short human text out; durations like "1m 05s".

/** Largest amount the API accepts (storage AMOUNT_MAX), in minor units. */
export const AMOUNT_MAX = 1_000_000_000_000_000;

const SVG_NS = 'http://www.w3.org/2000/svg';

function append(el, child) {
  if (child == null || child === false || child === true) return;
  if (Array.isArray(child)) {
    for (const c of child) append(el, c);
  } else if (child instanceof Node) {
    el.appendChild(child);
  } else {
    el.appendChild(document.createTextNode(String(child)));
  }
}

function setAttrs(el, attrs, isSvg) {
  if (!attrs) return;
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === 'class' || k === 'className') {
      el.setAttribute('class', Array.isArray(v) ? v.filter(Boolean).join(' ') : v);
    } else if (k === 'dataset') {
      for (const [dk, dv] of Object.entries(v)) if (dv != null) el.dataset[dk] = dv;
    } else if (k.startsWith('on') && typeof v === 'function') {
      el.addEventListener(k.slice(2).toLowerCase(), v);
    } else if (k === 'text') {
      el.textContent = v;
    } else if (!isSvg && (k === 'value' || k === 'checked' || k === 'disabled' || k === 'selected' || k === 'hidden')) {
      el[k] = v;
      if (k !== 'value' && v) el.setAttribute(k, '');
    } else {
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
}

/** h('div', {class: 'x', onClick: fn}, 'text', child, [more]) → HTMLElement. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs && (typeof attrs !== 'object' || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  setAttrs(el, attrs, false);
  append(el, children);
  return el;
}

/** svg('line', {x1: 0, ...}) → SVGElement. */
export function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs, true);
  append(el, children);
  return el;
}

/** Replaces an element's children. */
export function mountChildren(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// ---------------------------------------------------------------- money

/** 1250 → "12.50"; null/undefined → "—". */
export function formatMoney(cents) {
  if (cents == null || cents === '' || Number.isNaN(Number(cents))) return '—';
  const n = Math.trunc(Number(cents));
  const neg = n < 0;
  const abs = Math.abs(n);
  const whole = Math.floor(abs / 100);
  const frac = String(abs % 100).padStart(2, '0');
  return `${neg ? '-' : ''}${whole}.${frac}`;
}

/**
 * Parses a major-unit amount typed by a user ("12", "12.5", "12.50", " 0.29 ") into
 * minor units, exactly. Returns {value} or {error}. Empty input gives {value: null}.
 */
export function parseMoney(input) {
  const s = String(input ?? '').trim().replace(/[\s_]/g, '');
  if (s === '') return { value: null };
  const m = /^(\d*)(?:\.(\d*))?$/.exec(s);
  if (!m || (m[1] === '' && (m[2] ?? '') === '')) {
    return { error: 'Enter an amount like 12.50' };
  }
  const whole = m[1].replace(/^0+(?=\d)/, '') || '0';
  const fracRaw = m[2] ?? '';
  if (fracRaw.length > 2) return { error: 'At most 2 decimals (cents)' };
  if (whole.length > 13) return { error: 'That amount is too large' };
  const cents = Number(whole) * 100 + Number(fracRaw.padEnd(2, '0'));
  if (cents > AMOUNT_MAX) return { error: `At most ${formatMoney(AMOUNT_MAX)}` };
  return { value: cents };
}

// ---------------------------------------------------------------- time

/** Milliseconds → "2d 03h", "1h 05m 10s", "1m 05s", "45s", "0s". */
export function formatDuration(ms) {
  if (ms == null || !Number.isFinite(ms)) return '—';
  let s = Math.max(0, Math.ceil(ms / 1000));
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const hh = Math.floor(s / 3600);
  s -= hh * 3600;
  const mm = Math.floor(s / 60);
  const ss = s - mm * 60;
  const p = (n) => String(n).padStart(2, '0');
  if (d > 0) return `${d}d ${p(hh)}h`;
  if (hh > 0) return `${hh}h ${p(mm)}m ${p(ss)}s`;
  if (mm > 0) return `${mm}m ${p(ss)}s`;
  return `${ss}s`;
}

/** Seconds → "90 s (1m 30s)"-style short text for form hints. */
export function describeSecs(secs) {
  if (!Number.isFinite(secs) || secs <= 0) return '';
  return formatDuration(secs * 1000);
}

export function parseTime(rfc3339) {
  if (!rfc3339) return null;
  const t = Date.parse(rfc3339);
  return Number.isNaN(t) ? null : t;
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const dateTimeFmt = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
});

/** "14:03:22" for today, else "Dec 6, 2026, 14:03:22". */
export function formatTime(rfc3339OrMs) {
  const t = typeof rfc3339OrMs === 'number' ? rfc3339OrMs : parseTime(rfc3339OrMs);
  if (t == null) return '—';
  const d = new Date(t);
  const now = new Date();
  if (d.toDateString() === now.toDateString()) return timeFmt.format(d);
  return dateTimeFmt.format(d);
}

export function formatDateTime(rfc3339OrMs) {
  const t = typeof rfc3339OrMs === 'number' ? rfc3339OrMs : parseTime(rfc3339OrMs);
  if (t == null) return '—';
  return dateTimeFmt.format(new Date(t));
}

/** "5s ago", "3m ago" … */
export function formatAgo(ms) {
  if (ms == null) return '—';
  if (ms < 1500) return 'just now';
  return `${formatDuration(ms)} ago`;
}

// ---------------------------------------------------------------- auctions

export const FORMATS = [
  { value: 'english', label: 'English', long: 'English (ascending, open bids)' },
  { value: 'sealed_first_price', label: 'Sealed, first price', long: 'Sealed bid, first price' },
  { value: 'sealed_second_price', label: 'Sealed, second price', long: 'Sealed bid, second price (Vickrey)' },
  { value: 'dutch', label: 'Dutch', long: 'Dutch (descending price)' },
  { value: 'multi_round_sealed', label: 'Multi-round sealed', long: 'Multi-round cumulative sealed' },
];

export function formatLabel(format) {
  return FORMATS.find((f) => f.value === format)?.label ?? format;
}

export function isSealed(format) {
  return format === 'sealed_first_price' || format === 'sealed_second_price';
}

/** A sealed auction before its close: no amount or bidder may be shown. (The view keeps
 * `"sealed": true` after the close too, so the status decides.) */
export function sealedOpen(a) {
  return isSealed(a.format) && !isFinal(a.status);
}

export const STATUS_LABEL = {
  scheduled: 'Scheduled',
  open: 'Open',
  open_for_joining: 'Joining',
  closing: 'Closing',
  closed: 'Closed',
  cancelled: 'Cancelled',
};

export function isFinal(status) {
  return status === 'closed' || status === 'cancelled';
}

/** The Dutch price at server time `now` (ms). Mirrors storage dutch_price. */
export function dutchPriceAt(a, now) {
  const start = parseTime(a.starts_at);
  const every = Math.max(1, (a.decrement_every_secs || 1) * 1000);
  const steps = Math.max(0, Math.floor((now - start) / every));
  return Math.max(a.floor_price, a.starting_price - steps * a.decrement);
}

/** When the Dutch price drops next (ms), or null at the floor. */
export function dutchNextDropAt(a, now) {
  const start = parseTime(a.starts_at);
  const every = Math.max(1, (a.decrement_every_secs || 1) * 1000);
  if (dutchPriceAt(a, now) <= a.floor_price) return null;
  if (now < start) return start + every;
  const steps = Math.floor((now - start) / every);
  return start + (steps + 1) * every;
}

/** One line describing how an auction ended, from a `result` object. */
export function describeOutcome(result) {
  if (!result) return '';
  switch (result.outcome) {
    case 'sold':
      return `Sold to ${result.winner} for ${formatMoney(result.price)}`;
    case 'bought_now':
      return `Bought now by ${result.winner} for ${formatMoney(result.price)}`;
    case 'reserve_not_met':
      return result.highest_bidder
        ? `Reserve not met — highest bid ${formatMoney(result.highest_bid)} by ${result.highest_bidder}`
        : 'Reserve not met';
    case 'no_bids':
      return 'Ended with no bids';
    case 'cancelled':
      return `Cancelled by the ${result.cancelled_by ?? 'seller'}`;
    case 'not_enough_bidders':
      return `Not enough bidders (${result.joined ?? 0} joined)`;
    default:
      return result.outcome ?? '';
  }
}

export const OUTCOME_LABEL = {
  sold: 'Sold',
  bought_now: 'Bought now',
  reserve_not_met: 'Reserve not met',
  no_bids: 'No bids',
  cancelled: 'Cancelled',
  not_enough_bidders: 'Not enough bidders',
};

/** A random hex string (works outside secure contexts, unlike crypto.randomUUID). */
export function randomId(bytes = 16) {
  const a = new Uint8Array(bytes);
  crypto.getRandomValues(a);
  return Array.from(a, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Plural helper: plural(3, 'bid') → "3 bids". */
export function plural(n, word, many = `${word}s`) {
  return `${n} ${n === 1 ? word : many}`;
}
