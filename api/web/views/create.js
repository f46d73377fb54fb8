// #/new: create an auction. One form for every format; only the chosen format's fields
// are shown and sent. Money is typed in major units ("10", "10.5", "10.50") and sent in
// minor units, converted by string parsing. Client-side checks mirror the server's
// (storage AuctionSpec::validate and the format checks); the server's message is shown
// on a 400. An Idempotency-Key per distinct request makes a double click harmless.

import { h, mountChildren, parseMoney, formatMoney, describeSecs, formatTime, FORMATS, formatDuration } from '../format.js';
import { api, session, hasRole, describeError, newIdempotencyKey } from '../api.js';

const ALL = ['english', 'sealed_first_price', 'sealed_second_price', 'dutch', 'multi_round_sealed'];
const SEALED = ['sealed_first_price', 'sealed_second_price'];
const DAY = 86400;

const FORMAT_HELP = {
  english: 'Open, ascending bids with a minimum step. Optional reserve, buy-now price and soft close (late bids extend the end).',
  sealed_first_price: 'Hidden bids, one per bidder (a new bid replaces theirs). The highest bid wins and pays its own amount.',
  sealed_second_price: 'Hidden bids, one per bidder. The highest bid wins and pays the second-highest amount (or the reserve if higher).',
  dutch: 'The price starts high and falls by a step at a fixed interval down to a floor. The first bidder to take it wins at once.',
  multi_round_sealed: 'Bidders join first; then each bids once per sealed round. Rounds are revealed as they complete; the highest cumulative total wins.',
};

export function mount(root, { navigate }) {
  if (!session.token) {
    root.appendChild(h('div', { class: 'narrow stack-lg' },
      h('h1', null, 'New auction'),
      h('div', { class: 'card stack' },
        h('p', null, 'Log in with a seller account to create an auction.'),
        h('a', { href: '#/login', class: 'btn btn-primary' }, 'Log in'))));
    return () => {};
  }

  const fields = {};
  const errors = {};
  const wrappers = [];

  /** A labelled input; `formats` lists where it shows. */
  function field({ id, key, label, hint, formats = ALL, type = 'text', money = false, required = false, placeholder, attrs = {}, suffix, chips, quiet = false }) {
    const input = h('input', {
      id, name: key, type, class: ['input', money && 'input-money num', !money && type === 'number' && 'num'], placeholder,
      inputmode: money ? 'decimal' : type === 'number' ? 'numeric' : null,
      autocomplete: 'off', 'aria-describedby': `${id}-hint ${id}-error`, ...attrs,
    });
    if (type === 'number') {
      input.type = 'text';
      input.setAttribute('inputmode', 'numeric');
      input.setAttribute('pattern', '[0-9]*');
    }
    const err = h('p', { class: 'field-error', id: `${id}-error` });
    const hintEl = h('p', { class: 'hint', id: `${id}-hint` }, hint ?? '');
    const labelEl = h('label', { for: id }, label, required ? h('span', { class: 'req', 'aria-hidden': 'true' }, ' *') : quiet ? null : h('span', { class: 'optional' }, ' (optional)'));
    const group = suffix
      ? h('div', { class: 'input-group' }, input, h('span', { class: 'input-suffix', 'aria-hidden': 'true' }, suffix))
      : input;
    let chipRow = null;
    if (chips) {
      chipRow = h('div', { class: 'chips', role: 'group', 'aria-label': `${label}: quick values` },
        chips.map(([text, value]) => {
          const b = h('button', { type: 'button', class: 'chip' }, text);
          b.addEventListener('click', () => {
            input.value = String(value);
            input.dispatchEvent(new Event('input', { bubbles: true }));
          });
          return b;
        }));
    }
    const wrap = h('div', { class: 'field', dataset: { formats: formats.join(' ') } }, labelEl, group, chipRow, hintEl, err);
    wrappers.push(wrap);
    fields[key] = { input, wrap, money, required, formats, hintEl, baseHint: hint ?? '' };
    errors[key] = err;
    if (required) input.setAttribute('aria-required', 'true');
    return wrap;
  }

  const formatSelect = h('select', { id: 'f-format', name: 'format', class: 'input', 'aria-describedby': 'f-format-hint' },
    FORMATS.map((f) => h('option', { value: f.value }, f.long)));
  const formatHint = h('p', { class: 'hint', id: 'f-format-hint' });

  const titleField = field({ id: 'f-title', key: 'title', label: 'Title', required: true, placeholder: 'e.g. Brass desk lamp, 1930s', attrs: { maxlength: 256 } });
  const formatField = h('div', { class: 'field' }, h('label', { for: 'f-format' }, 'Format'), formatSelect, formatHint);

  const startingField = field({ id: 'f-starting-price', key: 'starting_price', label: 'Starting price', money: true, required: true, placeholder: '10.00' });
  const incrementField = field({ id: 'f-increment', key: 'increment', label: 'Bid increment', money: true, formats: ['english'], required: true, placeholder: '1.00', hint: 'Each bid must beat the price by at least this much.' });
  const bandsInput = h('textarea', { id: 'f-increment-bands', name: 'increment_bands', class: 'input mono', rows: 3, placeholder: '0 0.50\n10.00 1.00\n100.00 5.00', 'aria-describedby': 'f-increment-bands-hint f-increment-bands-error' });
  const bandsError = h('p', { class: 'field-error', id: 'f-increment-bands-error' });
  const bandsWrap = h('details', { class: 'more field', dataset: { formats: 'english' } },
    h('summary', null, 'Increment by price band (instead of one step)'),
    h('label', { for: 'f-increment-bands' }, 'Bands: "from price, step" per line'),
    bandsInput,
    h('p', { class: 'hint', id: 'f-increment-bands-hint' }, 'The band with the highest "from" at or below the current price applies. The first band starts at 0.'),
    bandsError);
  wrappers.push(bandsWrap);

  const reserveField = field({ id: 'f-reserve-price', key: 'reserve_price', label: 'Reserve price', money: true, formats: ['english', ...SEALED, 'multi_round_sealed'], hint: 'Hidden. Below it the item does not sell; bidders only see whether it is met.' });
  const buyNowField = field({ id: 'f-buy-now-price', key: 'buy_now_price', label: 'Buy-now price', money: true, formats: ['english'], hint: 'Anyone may buy at this price until the reserve is met by a bid.' });

  const startsInput = h('input', { id: 'f-starts-at', name: 'starts_at', type: 'datetime-local', class: 'input', step: 1, 'aria-describedby': 'f-starts-at-hint f-starts-at-error' });
  const startsError = h('p', { class: 'field-error', id: 'f-starts-at-error' });
  const startsWrap = h('div', { class: 'field' },
    h('label', { for: 'f-starts-at' }, 'Starts at', h('span', { class: 'optional' }, ' (optional)')),
    startsInput,
    h('p', { class: 'hint', id: 'f-starts-at-hint' }, 'Your local time. Empty: starts now.'),
    startsError);

  const durationField = field({
    id: 'f-duration-secs', key: 'duration_secs', label: 'Duration', type: 'number', formats: ['english', ...SEALED], required: true, suffix: 'seconds', placeholder: '300',
    chips: [['1 min', 60], ['5 min', 300], ['1 hour', 3600], ['1 day', DAY], ['7 days', 7 * DAY]],
  });

  const softWindow = field({ id: 'f-soft-window-secs', key: 'soft_window_secs', quiet: true, label: 'Window', type: 'number', formats: ['english'], suffix: 's', placeholder: '30', hint: 'A bid this close to the end…' });
  const softExtend = field({ id: 'f-soft-extend-secs', key: 'soft_extend_secs', quiet: true, label: 'Extend by', type: 'number', formats: ['english'], suffix: 's', placeholder: '30', hint: '…moves the end to the bid time plus this…' });
  const softMax = field({ id: 'f-soft-max-extensions', key: 'soft_max_extensions', quiet: true, label: 'At most', type: 'number', formats: ['english'], suffix: 'times', placeholder: '5', hint: '…this many times.' });
  const softError = h('p', { class: 'field-error', id: 'f-soft-error' });
  const softFieldset = h('fieldset', { class: 'fieldset', dataset: { formats: 'english' } },
    h('legend', null, 'Soft close (anti-sniping)', h('span', { class: 'optional' }, ' — leave empty for none')),
    h('div', { class: 'grid-3' }, softWindow, softExtend, softMax),
    softError);
  wrappers.push(softFieldset);

  const decrementField = field({ id: 'f-decrement', key: 'decrement', label: 'Price drop per step', money: true, formats: ['dutch'], required: true, placeholder: '1.00' });
  const everyField = field({ id: 'f-decrement-every-secs', key: 'decrement_every_secs', label: 'Every', type: 'number', formats: ['dutch'], required: true, suffix: 'seconds', placeholder: '10' });
  const floorField = field({ id: 'f-floor-price', key: 'floor_price', label: 'Floor price', money: true, formats: ['dutch'], required: true, placeholder: '1.00', hint: 'The lowest price. The auction closes unsold one step after reaching it.' });

  const minRounds = field({ id: 'f-min-rounds', key: 'min_rounds', label: 'Minimum rounds', type: 'number', formats: ['multi_round_sealed'], required: true, placeholder: '2' });
  const maxRounds = field({ id: 'f-max-rounds', key: 'max_rounds', label: 'Maximum rounds', type: 'number', formats: ['multi_round_sealed'], required: true, placeholder: '5', hint: 'At most 100.' });
  const roundSecs = field({ id: 'f-round-secs', key: 'round_secs', label: 'Round length', type: 'number', formats: ['multi_round_sealed'], required: true, suffix: 'seconds', placeholder: '60', chips: [['30 s', 30], ['1 min', 60], ['5 min', 300]] });
  const minBidders = field({ id: 'f-min-bidders', key: 'min_bidders', label: 'Bidders needed', type: 'number', formats: ['multi_round_sealed'], required: true, placeholder: '2' });
  const joinSecs = field({ id: 'f-join-secs', key: 'join_secs', label: 'Joining window', type: 'number', formats: ['multi_round_sealed'], suffix: 'seconds', placeholder: '600', hint: 'Default 600 s. Round 1 starts when the seller starts it, or here if enough have joined.' });

  const summary = h('div', { class: 'summary', 'aria-live': 'polite' });
  const createError = h('div', { class: 'form-error', 'data-testid': 'create-error', role: 'alert' });
  const submit = h('button', { type: 'submit', id: 'create-submit', class: 'btn btn-primary btn-large' }, 'Create auction');

  const section = (title, ...children) => h('section', { class: 'form-section' }, h('h2', null, title), ...children);

  const form = h('form', { id: 'create-form', class: 'stack-lg', novalidate: true },
    section('What you are selling', titleField, formatField),
    section('Price', h('div', { class: 'grid-2' }, startingField, incrementField, decrementField, floorField, everyField, reserveField, buyNowField), bandsWrap),
    section('Timing', h('div', { class: 'grid-2' }, startsWrap, durationField, minRounds, maxRounds, roundSecs, minBidders, joinSecs), softFieldset),
    createError,
    h('div', { class: 'form-actions' }, submit, h('a', { href: '#/', class: 'btn btn-ghost' }, 'Cancel')));

  const warn = !hasRole('seller')
    ? h('div', { class: 'notice notice-warn' }, `Your account (${session.account?.name}) does not have the seller role: the node will refuse to create an auction for it.`)
    : null;

  root.appendChild(h('div', { class: 'stack-lg' },
    h('div', { class: 'page-head' }, h('div', null, h('h1', null, 'New auction'), h('p', { class: 'muted' }, `Selling as ${session.account?.name ?? 'you'}.`))),
    warn,
    h('div', { class: 'create-layout' },
      h('div', { class: 'card' }, form),
      h('aside', { class: 'card summary-card', 'aria-label': 'Summary' }, h('h2', null, 'Summary'), summary))));

  function format() {
    return formatSelect.value;
  }

  function applyFormat() {
    const f = format();
    for (const w of wrappers) {
      const show = w.dataset.formats.split(' ').includes(f);
      w.hidden = !show;
    }
    formatHint.textContent = FORMAT_HELP[f];
    fields.duration_secs.hintEl.textContent = '';
    updateSummary();
  }

  function secsHint(key) {
    const fdef = fields[key];
    const v = Number(fdef.input.value);
    const text = /^\d+$/.test(fdef.input.value.trim()) && v > 0 ? `= ${describeSecs(v)}` : '';
    fdef.hintEl.textContent = [fdef.baseHint, text].filter(Boolean).join(' ');
  }

  // ---------------------------------------------------------------- reading the form

  function clearErrors() {
    for (const e of Object.values(errors)) e.textContent = '';
    for (const f of Object.values(fields)) f.input.removeAttribute('aria-invalid');
    bandsError.textContent = '';
    startsError.textContent = '';
    softError.textContent = '';
    bandsInput.removeAttribute('aria-invalid');
    startsInput.removeAttribute('aria-invalid');
    createError.textContent = '';
    createError.classList.remove('shown');
  }

  /** Reads and checks the visible fields. Returns {body, problems: [{key, el, msg}]}. */
  function read() {
    const f = format();
    const problems = [];
    const visible = (key) => fields[key].formats.includes(f);
    const bad = (key, msg) => problems.push({ key, msg });
    const money = (key) => {
      if (!visible(key)) return null;
      const r = parseMoney(fields[key].input.value);
      if (r.error) bad(key, r.error);
      else if (r.value == null && fields[key].required) bad(key, 'Required.');
      return r.value ?? null;
    };
    const int = (key, { min = 0, max = Number.MAX_SAFE_INTEGER, required = fields[key].required } = {}) => {
      if (!visible(key)) return null;
      const raw = fields[key].input.value.trim();
      if (raw === '') {
        if (required) bad(key, 'Required.');
        return null;
      }
      if (!/^\d+$/.test(raw)) {
        bad(key, 'Enter a whole number.');
        return null;
      }
      const v = Number(raw);
      if (v < min || v > max) {
        bad(key, max === Number.MAX_SAFE_INTEGER ? `At least ${min}.` : `Between ${min} and ${max}.`);
        return null;
      }
      return v;
    };

    const body = { format: f };
    const title = fields.title.input.value.trim();
    if (!title) bad('title', 'Give the auction a title.');
    else if (new TextEncoder().encode(title).length > 256) bad('title', 'At most 256 bytes.');
    else if (/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/.test(title)) bad('title', 'No control characters.');
    body.title = title;

    const starting = money('starting_price');
    if (starting === 0) bad('starting_price', 'At least 0.01.');
    body.starting_price = starting;

    if (f === 'english') {
      const bandsText = bandsInput.value.trim();
      if (bandsText) {
        const bands = [];
        const lines = bandsText.split('\n').map((l) => l.trim()).filter(Boolean);
        for (const [i, line] of lines.entries()) {
          const parts = line.split(/[\s,;:]+/).filter(Boolean);
          const from = parseMoney(parts[0]);
          const step = parseMoney(parts[1]);
          if (parts.length !== 2 || from.error || step.error || from.value == null || step.value == null) {
            problems.push({ key: 'bands', msg: `Line ${i + 1}: write "from step", e.g. "10.00 1.00".` });
            break;
          }
          if (step.value === 0) {
            problems.push({ key: 'bands', msg: `Line ${i + 1}: the step must be more than 0.` });
            break;
          }
          bands.push({ from: from.value, increment: step.value });
        }
        if (bands.length) {
          if (bands[0].from !== 0) problems.push({ key: 'bands', msg: 'The first band must start at 0.' });
          else if (bands.some((b, i) => i > 0 && b.from <= bands[i - 1].from)) problems.push({ key: 'bands', msg: 'The "from" prices must increase.' });
          else if (bands.length > 64) problems.push({ key: 'bands', msg: 'At most 64 bands.' });
          body.increment = bands;
        }
        if (fields.increment.input.value.trim()) bad('increment', 'Give one step or price bands, not both.');
      } else {
        const r = parseMoney(fields.increment.input.value);
        const inc = r.error ? (bad('increment', r.error), undefined) : r.value;
        if (inc === null) bad('increment', 'Required for an English auction (or give price bands below).');
        else if (inc === 0) bad('increment', 'At least 0.01.');
        else if (inc != null) body.increment = inc;
      }
    }

    if (['english', ...SEALED].includes(f)) {
      body.duration_secs = int('duration_secs', { min: 1, max: 365 * DAY });
    }
    const reserve = money('reserve_price');
    if (reserve != null) {
      if (starting != null && reserve < starting) bad('reserve_price', 'At least the starting price.');
      body.reserve_price = reserve;
    }
    if (f === 'english') {
      const buyNow = money('buy_now_price');
      if (buyNow != null) {
        if (starting != null && buyNow < starting) bad('buy_now_price', 'At least the starting price.');
        else if (reserve != null && buyNow < reserve) bad('buy_now_price', 'At least the reserve price.');
        body.buy_now_price = buyNow;
      }
      const w = int('soft_window_secs', { min: 1, max: DAY, required: false });
      const x = int('soft_extend_secs', { min: 1, max: DAY, required: false });
      const m = int('soft_max_extensions', { min: 0, max: 1000, required: false });
      const given = ['soft_window_secs', 'soft_extend_secs', 'soft_max_extensions'].filter((k) => fields[k].input.value.trim() !== '');
      if (given.length > 0 && given.length < 3) {
        problems.push({ key: 'soft', msg: 'Fill in all three soft-close fields, or none for no soft close.' });
      } else if (given.length === 3 && w != null && x != null && m != null) {
        body.soft_close = { window_secs: w, extend_secs: x, max_extensions: m };
      }
    }
    if (f === 'dutch') {
      const dec = money('decrement');
      if (dec === 0) bad('decrement', 'At least 0.01.');
      body.decrement = dec;
      body.decrement_every_secs = int('decrement_every_secs', { min: 1, max: 365 * DAY });
      const floor = money('floor_price');
      if (floor === 0) bad('floor_price', 'At least 0.01.');
      else if (floor != null && starting != null && floor > starting) bad('floor_price', 'At most the starting price.');
      body.floor_price = floor;
      if (dec && body.decrement_every_secs && floor != null && starting != null && floor <= starting) {
        const steps = Math.ceil((starting - floor) / dec) + 1;
        if (steps * body.decrement_every_secs > 365 * DAY) bad('decrement_every_secs', 'The descent to the floor would take more than a year.');
      }
    }
    if (f === 'multi_round_sealed') {
      const minR = int('min_rounds', { min: 1, max: 100 });
      const maxR = int('max_rounds', { min: 1, max: 100 });
      if (minR != null && maxR != null && minR > maxR) bad('min_rounds', 'At most the maximum rounds.');
      body.min_rounds = minR;
      body.max_rounds = maxR;
      body.round_secs = int('round_secs', { min: 1, max: DAY });
      body.min_bidders = int('min_bidders', { min: 1, max: 1000 });
      const join = int('join_secs', { min: 1, max: DAY, required: false });
      if (join != null) body.join_secs = join;
    }

    if (startsInput.value) {
      const t = new Date(startsInput.value).getTime();
      if (Number.isNaN(t)) problems.push({ key: 'starts', msg: 'Not a valid date and time.' });
      else body.starts_at = new Date(t).toISOString();
    }

    for (const k of Object.keys(body)) if (body[k] == null) delete body[k];
    return { body, problems };
  }

  function showProblems(problems) {
    let first = null;
    for (const p of problems) {
      let input;
      if (p.key === 'bands') {
        bandsError.textContent = p.msg;
        input = bandsInput;
        bandsWrap.open = true;
      } else if (p.key === 'starts') {
        startsError.textContent = p.msg;
        input = startsInput;
      } else if (p.key === 'soft') {
        softError.textContent = p.msg;
        input = fields.soft_window_secs.input;
      } else {
        errors[p.key].textContent = p.msg;
        input = fields[p.key].input;
      }
      input.setAttribute('aria-invalid', 'true');
      first ??= input;
    }
    createError.textContent = problems.length === 1 ? `Check this field: ${problems[0].msg}` : `Check the ${problems.length} highlighted fields.`;
    createError.classList.add('shown');
    first?.focus();
  }

  // ---------------------------------------------------------------- summary

  function updateSummary() {
    const { body, problems } = read();
    const f = body.format;
    const lines = [];
    const fm = (v) => (v == null ? '…' : formatMoney(v));
    lines.push(h('p', null, h('strong', null, body.title || 'Untitled'), ` — ${FORMATS.find((x) => x.value === f).long}`));
    const startMs = body.starts_at ? Date.parse(body.starts_at) : Date.now();
    const when = body.starts_at ? `starts ${formatTime(startMs)}` : 'starts as soon as you create it';
    if (f === 'english') {
      lines.push(h('p', null, `Opens at ${fm(body.starting_price)}, `,
        Array.isArray(body.increment) ? `steps by price band (${body.increment.length})` : `bids rise by at least ${fm(body.increment)}`, '.'));
      if (body.reserve_price != null) lines.push(h('p', null, `Reserve ${fm(body.reserve_price)} (hidden).`));
      if (body.buy_now_price != null) lines.push(h('p', null, `Buy now at ${fm(body.buy_now_price)}.`));
      lines.push(h('p', null, body.soft_close
        ? `Soft close: bids in the last ${body.soft_close.window_secs}s extend it by ${body.soft_close.extend_secs}s, up to ${body.soft_close.max_extensions} times.`
        : 'No soft close: it ends on time.'));
    } else if (SEALED.includes(f)) {
      lines.push(h('p', null, `Sealed bids from ${fm(body.starting_price)}; the winner pays ${f === 'sealed_first_price' ? 'their bid' : 'the second-highest bid'}.`));
      if (body.reserve_price != null) lines.push(h('p', null, `Reserve ${fm(body.reserve_price)} (hidden).`));
    } else if (f === 'dutch') {
      lines.push(h('p', null, `Starts at ${fm(body.starting_price)} and falls ${fm(body.decrement)} every ${body.decrement_every_secs ?? '…'}s to ${fm(body.floor_price)}.`));
      if (body.decrement && body.decrement_every_secs && body.floor_price != null && body.starting_price != null && body.floor_price <= body.starting_price) {
        const steps = Math.ceil((body.starting_price - body.floor_price) / body.decrement) + 1;
        lines.push(h('p', null, `Closes unsold after ${formatDuration(steps * body.decrement_every_secs * 1000)} if nobody takes it.`));
      }
    } else {
      lines.push(h('p', null, `${body.min_bidders ?? '…'} bidders needed, ${body.join_secs ?? 600}s to join; ${body.min_rounds ?? '…'}–${body.max_rounds ?? '…'} rounds of ${body.round_secs ?? '…'}s; bids from ${fm(body.starting_price)}.`));
    }
    if (body.duration_secs) {
      lines.push(h('p', null, `${when[0].toUpperCase()}${when.slice(1)}, ends after ${formatDuration(body.duration_secs * 1000)} (about ${formatTime(startMs + body.duration_secs * 1000)}).`));
    } else {
      lines.push(h('p', null, `${when[0].toUpperCase()}${when.slice(1)}.`));
    }
    lines.push(h('p', { class: problems.length ? 'muted small' : 'ok small' }, problems.length ? `${problems.length} field${problems.length === 1 ? '' : 's'} to complete` : 'Ready to create'));
    mountChildren(summary, lines);
  }

  // ---------------------------------------------------------------- submit

  let lastBody = null;
  let lastKey = null;
  let busy = false;

  form.addEventListener('input', (e) => {
    if (e.target.id === 'f-duration-secs') secsHint('duration_secs');
    if (e.target.id === 'f-round-secs') secsHint('round_secs');
    if (e.target.id === 'f-join-secs') secsHint('join_secs');
    if (e.target.id === 'f-decrement-every-secs') secsHint('decrement_every_secs');
    if (e.target.getAttribute?.('aria-invalid')) {
      e.target.removeAttribute('aria-invalid');
      const err = document.getElementById(`${e.target.id}-error`);
      if (err) err.textContent = '';
    }
    updateSummary();
  });
  formatSelect.addEventListener('change', () => {
    clearErrors();
    applyFormat();
  });

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (busy) return;
    clearErrors();
    const { body, problems } = read();
    if (problems.length) {
      showProblems(problems);
      return;
    }
    const text = JSON.stringify(body);
    // The same request gets the same key (a retry after a network error or a double
    // click is answered once); a changed form is a new request with a new key.
    if (text !== lastBody) {
      lastBody = text;
      lastKey = newIdempotencyKey();
    }
    busy = true;
    submit.disabled = true;
    submit.textContent = 'Creating…';
    try {
      const created = await api.createAuction(text, lastKey);
      lastBody = null;
      navigate(`#/auctions/${created.id}`);
    } catch (err) {
      const msg = describeError(err, formatMoney);
      createError.textContent = err.status === 400 ? `The node refused this auction: ${msg}` : msg;
      createError.classList.add('shown');
      // Point at the field the server named, if any.
      const named = Object.keys(fields).find((k) => new RegExp(`\\b${k}\\b`).test(err.message ?? ''));
      if (named && fields[named].formats.includes(format())) {
        errors[named].textContent = msg;
        fields[named].input.setAttribute('aria-invalid', 'true');
      }
      createError.scrollIntoView({ block: 'nearest' });
    } finally {
      busy = false;
      submit.disabled = false;
      submit.textContent = 'Create auction';
    }
  });

  applyFormat();
  fields.title.input.focus();
  return () => {};
}
