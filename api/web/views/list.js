// #/ : the auction list. Filter by status (kept in the URL: #/?status=closed), search
// titles, live: polls every 5 s while the tab is visible and at once when it regains
// focus; the time left ticks every second.

import { h, formatMoney, formatDuration, formatLabel, isFinal, isSealed, sealedOpen, parseTime, plural, STATUS_LABEL, dutchPriceAt, describeOutcome, formatAgo, mountChildren } from '../format.js';
import { api, serverNow, describeError, hasRole } from '../api.js';

const FILTERS = [
  { value: 'open', label: 'Open' },
  { value: 'scheduled', label: 'Scheduled' },
  { value: 'closed', label: 'Closed' },
  { value: 'cancelled', label: 'Cancelled' },
  { value: 'all', label: 'All' },
];
const POLL_MS = 5000;
const PAGE = 500;
const MAX_ITEMS = 2000;

export function mount(root, { query, navigate }) {
  const status = FILTERS.some((f) => f.value === query.get('status')) ? query.get('status') : 'open';
  let search = query.get('q') ?? '';
  let auctions = [];
  let truncated = false;
  let loadedAt = 0;
  let error = null;
  let loading = true;
  let controller = null;
  let stopped = false;

  const filterBar = h('div', { class: 'segmented', role: 'group', 'aria-label': 'Filter by status' },
    FILTERS.map((f) => {
      const b = h('a', {
        href: f.value === 'open' ? '#/' : `#/?status=${f.value}`,
        class: 'segment',
        'aria-current': f.value === status ? 'true' : null,
      }, f.label);
      return b;
    }));
  const searchInput = h('input', { type: 'search', id: 'list-search', class: 'input', placeholder: 'Search titles, sellers…', value: search, 'aria-label': 'Search auctions' });
  searchInput.addEventListener('input', () => {
    search = searchInput.value;
    renderList();
  });
  const updated = h('span', { class: 'muted small', 'aria-live': 'off' });
  const refresh = h('button', { type: 'button', class: 'btn btn-small btn-ghost', 'aria-label': 'Refresh now' }, '↻ Refresh');
  refresh.addEventListener('click', () => load());
  const list = h('div', { class: 'auction-grid', 'data-testid': 'auction-list', 'aria-busy': 'true' });
  // Cards by auction id with the JSON they were drawn from: a poll redraws only what changed,
  // so keyboard focus and scroll position survive the refresh.
  const cards = new Map();
  const notice = h('div');

  const heading = h('div', { class: 'page-head' },
    h('div', null,
      h('h1', null, 'Auctions'),
      h('p', { class: 'muted' }, 'Live from the cluster. Prices and time left update by themselves. Auctions closed more than a day ago are archived: open one by its number (#/auctions/ID).')),
    hasRole('seller') ? h('a', { href: '#/new', class: 'btn btn-primary' }, '+ New auction') : null);

  root.appendChild(h('div', { class: 'stack-lg' },
    heading,
    h('div', { class: 'toolbar' }, filterBar, h('div', { class: 'toolbar-right' }, searchInput, refresh, updated)),
    notice,
    list));

  async function load() {
    controller?.abort();
    controller = new AbortController();
    const signal = controller.signal;
    try {
      const items = [];
      let after = null;
      let more = true;
      while (more && items.length < MAX_ITEMS) {
        // Only what the node holds in memory: open auctions and those closed within
        // archive_after_secs (a day by default). Archived ones stay readable by id.
        const page = await api.listAuctions({ status: status === 'all' ? null : status, limit: PAGE, after, archived: false, signal });
        items.push(...page.auctions);
        after = page.next_after;
        more = after != null;
      }
      truncated = more;
      auctions = items;
      error = null;
      loadedAt = Date.now();
    } catch (e) {
      if (e.name === 'AbortError') return;
      error = describeError(e, formatMoney);
    }
    loading = false;
    if (!stopped) renderList();
  }

  function sortKey(a) {
    const ends = parseTime(a.ends_at) ?? 0;
    switch (status) {
      case 'open':
        return ends; // ending soonest first
      case 'scheduled':
        return parseTime(a.starts_at) ?? 0;
      default:
        return -a.id; // newest first
    }
  }

  function renderList() {
    list.setAttribute('aria-busy', String(loading));
    mountChildren(notice, error
      ? h('div', { class: 'notice notice-error', role: 'alert' }, `Could not load auctions: ${error}`)
      : truncated ? h('div', { class: 'notice' }, `Showing the first ${MAX_ITEMS} auctions.`) : null);
    if (loading) {
      mountChildren(list, [0, 1, 2].map(() => h('div', { class: 'auction-card skeleton', 'aria-hidden': 'true' })));
      return;
    }
    const q = search.trim().toLowerCase();
    const shown = auctions
      .filter((a) => !q || a.title.toLowerCase().includes(q) || a.seller.toLowerCase().includes(q) || String(a.id) === q)
      .sort((x, y) => sortKey(x) - sortKey(y));
    if (shown.length === 0) {
      cards.clear();
      mountChildren(list, h('div', { class: 'empty-state' },
        h('h2', null, q ? 'No auction matches' : `No ${status === 'all' ? '' : `${status} `}auctions`),
        h('p', { class: 'muted' }, q ? 'Try another search.' : status === 'open' ? 'Nothing is up for auction right now.' : 'Try another filter.'),
        hasRole('seller') ? h('a', { href: '#/new', class: 'btn btn-primary' }, 'Create an auction') : null));
      return;
    }
    for (const el of [...list.children]) if (!el._auction) el.remove();
    const keep = new Set();
    shown.forEach((a, i) => {
      const json = JSON.stringify(a);
      let entry = cards.get(a.id);
      if (!entry || entry.json !== json) {
        const el = card(a);
        if (entry) {
          const hadFocus = entry.el.contains(document.activeElement);
          entry.el.replaceWith(el);
          if (hadFocus) el.focus();
        }
        entry = { el, json };
        cards.set(a.id, entry);
      }
      keep.add(a.id);
      if (list.children[i] !== entry.el) list.insertBefore(entry.el, list.children[i] ?? null);
    });
    for (const [id, entry] of cards) {
      if (!keep.has(id)) {
        entry.el.remove();
        cards.delete(id);
      }
    }
    tick();
  }

  function priceOf(a, now) {
    if (a.result && (a.result.outcome === 'sold' || a.result.outcome === 'bought_now')) return { label: 'Sold for', value: a.result.price };
    if (a.format === 'dutch' && !isFinal(a.status)) return { label: 'Now', value: dutchPriceAt(a, now), dutch: true };
    if (a.format === 'multi_round_sealed') {
      const lead = a.totals?.[0];
      return lead ? { label: 'Leading total', value: lead.total } : { label: 'Min bid', value: a.starting_price };
    }
    if (sealedOpen(a)) return { label: 'Min bid', value: a.starting_price };
    if (a.highest_bid) return { label: isFinal(a.status) ? 'Final bid' : 'Current bid', value: a.highest_bid.amount };
    return { label: 'Starting', value: a.starting_price };
  }

  function card(a) {
    const now = serverNow();
    const p = priceOf(a, now);
    const bidsText = a.format === 'multi_round_sealed'
      ? (a.round > 0 ? `round ${a.round} · ${plural(a.participants?.length ?? 0, 'bidder')}` : plural(a.participants?.length ?? 0, 'bidder') + ' joined')
      : sealedOpen(a) ? `sealed: ${plural(a.bid_count, 'bid')}` : plural(a.bid_count, 'bid');
    const time = h('span', { class: 'card-time num', 'data-ends-at': a.ends_at, 'data-starts-at': a.starts_at, 'data-status': a.status });
    const price = h('span', { class: ['card-price', 'num'], 'data-dutch': p.dutch ? 'true' : null, 'data-id': a.id }, formatMoney(p.value));
    const link = h('a', { href: `#/auctions/${a.id}`, class: ['auction-card', `status-${a.status}`], 'data-testid': 'auction-link' },
      h('div', { class: 'card-top' },
        h('span', { class: ['badge', `badge-${a.status}`] }, STATUS_LABEL[a.status] ?? a.status),
        h('span', { class: 'badge badge-format' }, formatLabel(a.format)),
        h('span', { class: 'muted small card-id' }, `#${a.id}`)),
      h('h2', { class: 'card-title' }, a.title),
      h('div', { class: 'card-price-row' },
        h('div', null, h('span', { class: 'card-price-label' }, p.label), price),
        h('div', { class: 'card-right' }, time, h('span', { class: 'muted small' }, bidsText))),
      h('div', { class: 'card-foot muted small' },
        h('span', null, `by ${a.seller}`),
        a.highest_bid && !isFinal(a.status) ? h('span', null, `leader ${a.highest_bid.bidder}`) : null,
        isFinal(a.status) && a.result ? h('span', null, describeOutcome(a.result)) : null));
    link._auction = a;
    return link;
  }

  function tick() {
    const now = serverNow();
    for (const el of list.querySelectorAll('.card-time')) {
      const st = el.dataset.status;
      if (isFinal(st)) {
        el.textContent = st === 'cancelled' ? 'cancelled' : 'ended';
        continue;
      }
      const starts = parseTime(el.dataset.startsAt);
      const ends = parseTime(el.dataset.endsAt);
      if (st === 'scheduled' && starts > now) {
        el.textContent = `starts in ${formatDuration(starts - now)}`;
      } else if (ends > now) {
        const left = ends - now;
        el.textContent = `${formatDuration(left)} left`;
        el.classList.toggle('urgent', left < 60_000);
      } else {
        el.textContent = 'closing…';
      }
    }
    for (const el of list.querySelectorAll('.card-price[data-dutch]')) {
      const a = el.closest('.auction-card')?._auction;
      if (a) el.textContent = formatMoney(dutchPriceAt(a, now));
    }
    if (loadedAt) updated.textContent = `Updated ${formatAgo(Date.now() - loadedAt)}`;
  }

  const tickTimer = setInterval(tick, 1000);
  const pollTimer = setInterval(() => {
    if (document.visibilityState === 'visible') load();
  }, POLL_MS);
  const onFocus = () => load();
  const onVisible = () => {
    if (document.visibilityState === 'visible') load();
  };
  window.addEventListener('focus', onFocus);
  document.addEventListener('visibilitychange', onVisible);

  renderList();
  load();

  void navigate;
  return () => {
    stopped = true;
    controller?.abort();
    clearInterval(tickTimer);
    clearInterval(pollTimer);
    window.removeEventListener('focus', onFocus);
    document.removeEventListener('visibilitychange', onVisible);
  };
}
