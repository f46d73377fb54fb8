// #/auctions/<id>: one auction, live.
//
// Loads the auction and its bid history over HTTP, then follows its events over the
// WebSocket (SSE as the fallback, see live.js) from the auction's seq on. Each event
// updates the page at once (price, leader, countdown, history, chart); a short debounced
// refetch then brings the authoritative view (min next bid, reserve, bid amounts).
//
// Per format:
// - english: price, leader, min next bid, proxy maximum, buy now, soft-close extensions;
// - sealed_*: "sealed: N bids", no amounts before the close, a new bid replaces yours;
// - dutch: the price falls on the client's clock between refreshes; "take it at X";
// - multi_round_sealed: join / start, rounds, totals, the round countdown.

import {
  h, mountChildren, formatMoney, parseMoney, formatDuration, formatTime, formatDateTime, parseTime,
  formatLabel, isSealed, sealedOpen, isFinal, STATUS_LABEL, OUTCOME_LABEL, describeOutcome, dutchPriceAt, dutchNextDropAt, plural, FORMATS,
} from '../format.js';
import { api, session, serverNow, describeError, ApiError } from '../api.js';
import { LiveFeed } from '../live.js';
import { createChart } from '../chart.js';

const LIVE_TEXT = { ws: 'live (websocket)', sse: 'live (sse)', reconnecting: 'reconnecting', connecting: 'reconnecting' };
const FORMAT_HELP = {
  english: 'Open ascending bids. The highest bid when the time runs out wins, if the reserve is met.',
  sealed_first_price: 'Each bidder places one hidden bid (a new one replaces theirs). The highest bid wins and pays its amount.',
  sealed_second_price: 'Each bidder places one hidden bid. The highest bid wins and pays the second-highest amount (or the reserve, if higher).',
  dutch: 'The price falls step by step until someone takes it. The first bid at or above the current price wins at once.',
  multi_round_sealed: 'Bidders join, then bid once per sealed round. Rounds are revealed as they complete; the highest cumulative total wins and pays it.',
};

export function mount(root, { params, setTitle, toast }) {
  const id = Number(params.id);
  let a = null; // the auction view
  let bids = []; // oldest first: {bid_id, seq, bidder, amount, price_after, leader_after, at, live?}
  let sealedInfo = null; // {bid_count} while sealed
  let live = null;
  let stopped = false;
  let refreshTimer = null;
  let refreshing = false;
  let refreshAgain = false;
  let myResult = null;
  let myResultFor = null;
  let chart = null;
  let lastFormKey = '';
  let lastStatus = '';
  let extendedNoteUntil = 0;
  const me = session.token ? session.account?.name : null;

  const container = h('div', { class: 'auction-page', 'data-testid': 'auction', 'data-auction-id': String(id), 'aria-busy': 'true' },
    h('p', { class: 'loading' }, 'Loading auction…'));
  root.appendChild(container);

  // ------------------------------------------------------------------ elements

  const el = {};
  function build() {
    el.status = h('span', { class: 'badge', 'data-testid': 'status' });
    el.format = h('span', { class: 'badge badge-format' }, formatLabel(a.format));
    el.title = h('h1', { 'data-testid': 'title', class: 'auction-title' }, a.title);
    el.byline = h('p', { class: 'muted' });
    el.liveDot = h('span', { class: 'live-dot', 'aria-hidden': 'true' });
    el.liveText = h('span', { 'data-testid': 'live-status' }, 'reconnecting');
    el.liveNote = h('span', { class: 'live-note muted small' });
    el.live = h('div', { class: 'live-indicator', 'data-state': 'connecting', title: 'Connection for live updates' }, el.liveDot, el.liveText, el.liveNote);

    el.priceLabel = h('div', { class: 'price-label', id: 'price-label' });
    el.price = h('div', { class: 'price-value num', 'data-testid': 'price', 'aria-live': a.format === 'dutch' ? 'off' : 'polite', 'aria-labelledby': 'price-label' });
    el.priceSub = h('div', { class: 'price-sub muted' });
    el.leader = h('span', { 'data-testid': 'leader', class: 'stat-value' }, '—');
    el.countLabel = h('div', { class: 'stat-label' }, 'Ends in');
    el.countdown = h('span', { class: 'stat-value num countdown', 'data-testid': 'countdown', role: 'timer', 'aria-live': 'off' });
    el.countSub = h('div', { class: 'stat-sub muted small' });
    el.extensions = h('span', { 'data-testid': 'extensions', class: 'num' }, '0');
    el.extMax = h('span', { class: 'muted' });
    el.bidCountLabel = h('div', { class: 'stat-label' }, 'Bids');
    el.bidCount = h('span', { class: 'stat-value num' });
    el.bidCountSub = h('div', { class: 'stat-sub muted small' });
    el.announce = h('div', { class: 'visually-hidden', 'aria-live': 'assertive' });
    el.banner = h('div', { class: 'banner', hidden: true });

    el.countBox = h('div', { class: 'stat stat-countdown' }, el.countLabel, el.countdown, el.countSub);
    el.extBox = h('div', { class: 'stat' }, h('div', { class: 'stat-label' }, 'Extensions'), h('span', { class: 'stat-value' }, el.extensions, el.extMax), h('div', { class: 'stat-sub muted small' }, a.soft_close ? `+${a.soft_close.extend_secs}s per late bid` : 'no soft close'));
    const stats = [
      h('div', { class: 'stat' }, el.leaderLabel = h('div', { class: 'stat-label' }, 'Leader'), el.leader),
      el.countBox,
    ];
    if (a.format === 'english') stats.push(el.extBox);
    if (a.format === 'dutch') {
      el.nextDrop = h('span', { class: 'stat-value num' });
      el.nextDropSub = h('div', { class: 'stat-sub muted small' });
      stats.push(h('div', { class: 'stat' }, h('div', { class: 'stat-label' }, 'Next drop'), el.nextDrop, el.nextDropSub));
    }
    stats.push(h('div', { class: 'stat' }, el.bidCountLabel, el.bidCount, el.bidCountSub));
    el.priceCard = h('section', { class: 'card price-card', 'aria-label': 'Current state' },
      el.banner,
      h('div', { class: 'price-block' }, el.priceLabel, el.price, el.priceSub),
      h('div', { class: 'stats' }, stats));

    el.result = h('section', { class: 'card result-card', 'data-testid': 'result', hidden: true, 'aria-live': 'polite' });

    el.chartCard = h('section', { class: 'card', 'aria-labelledby': 'chart-h' },
      h('div', { class: 'card-head' }, h('h2', { id: 'chart-h' }, a.format === 'multi_round_sealed' ? 'Totals by round' : a.format === 'dutch' ? 'Price schedule' : isSealed(a.format) ? 'Bids over time' : 'Price over time')));
    chart = createChart(el.chartCard, {
      testid: 'price-chart',
      label: a.format === 'multi_round_sealed' ? 'Cumulative totals by round' : 'Price over time',
    });

    el.history = h('ol', { class: 'bid-history', 'data-testid': 'bid-history', reversed: true });
    el.historyNote = h('p', { class: 'muted' });
    el.historyHead = h('h2', { id: 'history-h' }, a.format === 'multi_round_sealed' ? 'Revealed bids' : 'Bid history');
    el.historyCard = h('section', { class: 'card', 'aria-labelledby': 'history-h' },
      h('div', { class: 'card-head' }, el.historyHead, el.historyCount = h('span', { class: 'muted small' })),
      el.historyNote, el.history);

    el.roundsCard = a.format === 'multi_round_sealed'
      ? h('section', { class: 'card', 'aria-labelledby': 'rounds-h' }, h('div', { class: 'card-head' }, h('h2', { id: 'rounds-h' }, 'Rounds and totals')), el.rounds = h('div', { class: 'table-wrap' }))
      : null;

    el.bidCard = h('section', { class: 'card bid-card', 'aria-labelledby': 'bid-h' });
    el.message = h('p', { class: 'bid-message', 'data-testid': 'bid-message', role: 'status', 'aria-live': 'polite' });
    el.details = h('section', { class: 'card', 'aria-labelledby': 'details-h' }, h('h2', { id: 'details-h' }, 'Details'), el.detailsBody = h('dl', { class: 'kv' }));

    const head = h('div', { class: 'auction-head' },
      h('div', { class: 'auction-head-main' },
        h('div', { class: 'badges' }, el.status, el.format, h('span', { class: 'muted small' }, `#${a.id}`)),
        el.title,
        el.byline),
      el.live);

    mountChildren(container,
      h('nav', { class: 'breadcrumb', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/' }, '← All auctions')),
      head,
      el.announce,
      h('div', { class: 'auction-layout' },
        h('div', { class: 'col-main' }, el.priceCard, el.result, el.chartCard, el.roundsCard, el.historyCard),
        h('div', { class: 'col-side' }, el.bidCard, el.details)));
    container.setAttribute('aria-busy', 'false');
  }

  // ------------------------------------------------------------------ derived state

  function now() {
    return serverNow();
  }

  function statusNow(t = now()) {
    if (isFinal(a.status)) return a.status;
    const starts = parseTime(a.starts_at);
    const ends = parseTime(a.ends_at);
    if (a.format === 'multi_round_sealed' && (a.round ?? 0) === 0 && t >= starts) return 'open_for_joining';
    if (t >= ends) return 'closing';
    if (t >= starts) return 'open';
    return 'scheduled';
  }

  function sold() {
    return a.result && (a.result.outcome === 'sold' || a.result.outcome === 'bought_now');
  }

  function priceNow(t = now()) {
    if (sold()) return { label: a.result.outcome === 'bought_now' ? 'Bought now for' : 'Sold for', value: a.result.price };
    switch (a.format) {
      case 'dutch':
        if (isFinal(a.status)) return { label: 'Final price', value: dutchPriceAt(a, parseTime(a.closed_at) ?? t) };
        if (t < parseTime(a.starts_at)) return { label: 'Starts at', value: a.starting_price };
        return { label: 'Current price (falling)', value: dutchPriceAt(a, t) };
      case 'multi_round_sealed': {
        const lead = a.totals?.[0];
        if (lead && lead.total > 0) return { label: isFinal(a.status) ? 'Highest total' : 'Leading total', value: lead.total };
        return { label: 'Minimum bid per round', value: a.starting_price };
      }
      default:
        if (sealedOpen(a)) return { label: 'Minimum bid (bids are sealed)', value: a.starting_price };
        if (a.highest_bid) return { label: isFinal(a.status) ? 'Highest bid' : 'Current price', value: a.highest_bid.amount };
        if (isSealed(a.format)) {
          const top = [...bids].sort((x, y) => y.amount - x.amount)[0];
          if (top) return { label: 'Highest bid', value: top.amount };
        }
        return { label: isFinal(a.status) ? 'Starting price (no bids)' : 'Starting price', value: a.starting_price };
    }
  }

  function leaderNow() {
    if (sold()) return a.result.winner;
    if (a.format === 'multi_round_sealed') {
      const lead = a.totals?.[0];
      return lead && lead.total > 0 ? lead.bidder : null;
    }
    if (a.result?.outcome === 'reserve_not_met') return a.result.highest_bidder ?? a.highest_bid?.bidder ?? null;
    return a.highest_bid?.bidder ?? null;
  }

  // ------------------------------------------------------------------ rendering

  function renderAll() {
    if (!a) return;
    setTitle(a.title);
    el.title.textContent = a.title;
    el.byline.textContent = `Sold by ${a.seller} · ${FORMATS.find((f) => f.value === a.format)?.long ?? a.format} · created ${formatDateTime(a.created_at)}`;
    renderPrice();
    renderTick();
    renderResult();
    renderHistory();
    renderChart();
    renderRounds();
    renderBidForm();
    renderDetails();
  }

  function renderPrice() {
    const p = priceNow();
    el.priceLabel.textContent = p.label;
    el.price.textContent = formatMoney(p.value);
    const leader = leaderNow();
    el.leader.textContent = leader ?? '—';
    el.leaderLabel.textContent = sold() ? (a.result.outcome === 'bought_now' ? 'Buyer' : 'Winner')
      : a.result?.outcome === 'reserve_not_met' ? 'Highest bidder'
        : a.format === 'multi_round_sealed' ? 'Leading' : 'Leader';
    el.leader.classList.toggle('is-me', !!me && leader === me);
    const subs = [];
    if (a.format === 'english' && !isFinal(a.status)) {
      if (a.min_next_bid != null) subs.push(h('span', null, 'Next bid at least ', h('strong', { class: 'num' }, formatMoney(a.min_next_bid))));
      if (a.has_reserve) subs.push(h('span', { class: ['pill', a.reserve_met ? 'pill-ok' : 'pill-warn'] }, a.reserve_met ? 'Reserve met' : 'Reserve not met'));
      if (me && leader === me) subs.push(h('span', { class: 'pill pill-ok' }, 'You lead'));
    } else if (a.format === 'dutch' && !isFinal(a.status)) {
      subs.push(h('span', null, `Falls ${formatMoney(a.decrement)} every ${formatDuration(a.decrement_every_secs * 1000)} to `, h('strong', { class: 'num' }, formatMoney(a.floor_price))));
    } else if (sealedOpen(a)) {
      subs.push(h('span', null, 'Amounts and bidders stay hidden until the close.'));
      if (a.has_reserve) subs.push(h('span', { class: 'pill' }, 'Has a reserve'));
    } else if (a.format === 'multi_round_sealed' && !isFinal(a.status)) {
      subs.push(h('span', null, a.round > 0 ? `Round ${a.round} of at most ${a.max_rounds}` : `Joining: ${a.participants?.length ?? 0} of ${a.min_bidders} needed`));
      if (me && leader === me) subs.push(h('span', { class: 'pill pill-ok' }, 'You lead'));
    }
    mountChildren(el.priceSub, subs);

    // Bids / sealed count.
    if (a.format === 'multi_round_sealed') {
      el.bidCountLabel.textContent = 'Participants';
      el.bidCount.textContent = String(a.participants?.length ?? 0);
      el.bidCountSub.textContent = a.round > 0 && !isFinal(a.status) ? `${a.bids_this_round ?? 0} bid this round` : `need ${a.min_bidders}`;
    } else if (sealedOpen(a)) {
      el.bidCountLabel.textContent = 'Sealed bids';
      el.bidCount.textContent = `sealed: ${plural(sealedInfo?.bid_count ?? a.bid_count ?? 0, 'bid')}`;
      el.bidCountSub.textContent = 'one per bidder';
    } else {
      el.bidCountLabel.textContent = 'Bids';
      el.bidCount.textContent = String(Math.max(a.bid_count ?? 0, bids.length));
      el.bidCountSub.textContent = '';
    }
    el.extensions.textContent = String(a.extensions ?? 0);
    el.extMax.textContent = a.soft_close ? ` / ${a.soft_close.max_extensions}` : '';
  }

  function renderTick() {
    if (!a || stopped) return;
    const t = now();
    const status = statusNow(t);
    if (status !== lastStatus) {
      lastStatus = status;
      el.status.textContent = status;
      el.status.className = `badge badge-${status}`;
      el.status.title = a.archived
        ? `${STATUS_LABEL[status] ?? status} — archived: moved from memory to the archive on disk`
        : STATUS_LABEL[status] ?? status;
      container.dataset.status = status;
      container.dataset.archived = a.archived ? 'true' : 'false';
      renderBidForm();
    }
    const starts = parseTime(a.starts_at);
    const ends = parseTime(a.ends_at);
    if (el.countdown.dataset.endsAt !== a.ends_at) el.countdown.dataset.endsAt = a.ends_at;
    if (isFinal(a.status)) {
      el.countLabel.textContent = 'Time left';
      el.countdown.textContent = a.status === 'cancelled' ? 'cancelled' : 'ended';
      el.countSub.textContent = a.closed_at ? `at ${formatTime(a.closed_at)}` : '';
      el.countBox.classList.remove('urgent', 'soft-window');
    } else {
      const left = ends - t;
      let label = 'Ends in';
      if (a.format === 'dutch') label = 'Closes unsold in';
      if (a.format === 'multi_round_sealed') label = (a.round ?? 0) > 0 ? `Round ${a.round} ends in` : 'Joining closes in';
      el.countLabel.textContent = label;
      el.countdown.textContent = left > 0 ? formatDuration(left) : '0s';
      el.countSub.textContent = left > 0 ? `at ${formatTime(ends)}` : a.format === 'multi_round_sealed' ? 'round closing…' : 'closing…';
      el.countBox.classList.toggle('urgent', left > 0 && left <= 60_000);
      const inWindow = a.format === 'english' && a.soft_close && left > 0 && left <= a.soft_close.window_secs * 1000
        && (a.extensions ?? 0) < a.soft_close.max_extensions;
      el.countBox.classList.toggle('soft-window', !!inWindow);
      if (inWindow) el.countSub.textContent = 'soft close: a bid now extends it';
      if (left > 0 && Date.now() < extendedNoteUntil) el.countSub.textContent = `extended (${a.extensions}×) to ${formatTime(ends)}`;
    }
    // Scheduled banner.
    if (status === 'scheduled') {
      el.banner.hidden = false;
      el.banner.textContent = `Bidding opens in ${formatDuration(starts - t)} (at ${formatTime(starts)}).`;
    } else {
      el.banner.hidden = true;
    }
    if (a.format === 'dutch' && !isFinal(a.status)) {
      const p = priceNow(t);
      const text = formatMoney(p.value);
      if (el.price.textContent !== text) {
        el.price.textContent = text;
        el.priceLabel.textContent = p.label;
        flash(el.price, 'flash-down');
        if (el.takeButton) el.takeButton.textContent = `Take it at ${text}`;
        if (el.takeButton) el.takeButton.dataset.amount = String(p.value);
      }
      const next = dutchNextDropAt(a, t);
      el.nextDrop.textContent = next ? formatDuration(next - t) : 'at floor';
      el.nextDropSub.textContent = next ? `to ${formatMoney(Math.max(a.floor_price, p.value - a.decrement))}` : `floor ${formatMoney(a.floor_price)}`;
    }
  }

  function renderResult() {
    if (!isFinal(a.status) || !a.result) {
      el.result.hidden = true;
      return;
    }
    el.result.hidden = false;
    const r = a.result;
    const won = me && r.winner === me;
    const parts = [
      h('div', { class: 'result-head' },
        h('span', { class: ['badge', `outcome-${r.outcome}`] }, OUTCOME_LABEL[r.outcome] ?? r.outcome),
        h('h2', null, won ? 'You won!' : a.status === 'cancelled' ? 'Auction cancelled' : 'Auction ended')),
      h('p', { class: 'result-line' }, describeOutcome(r)),
    ];
    if (r.winner) {
      parts.push(h('dl', { class: 'result-kv' },
        h('div', null, h('dt', null, 'Winner'), h('dd', { class: 'result-winner' }, r.winner)),
        h('div', null, h('dt', null, 'Price'), h('dd', { class: 'num result-price' }, formatMoney(r.price)))));
    }
    if (a.format === 'multi_round_sealed' && a.totals?.length) {
      parts.push(h('p', { class: 'muted small' }, `After ${plural(a.rounds?.length ?? 0, 'round')}.`));
    }
    parts.push(h('p', { class: 'muted small' }, 'Outcome: ', h('code', null, r.outcome), a.closed_at ? ` · ${formatDateTime(a.closed_at)}` : ''));
    if (myResult && myResult.result !== 'not_a_bidder') {
      const mine = myResult.result === 'won'
        ? `Your result: won. You pay ${formatMoney(myResult.price)}.`
        : `Your result: ${myResult.result}.${myResult.winning_price != null ? ` The winning price was ${formatMoney(myResult.winning_price)}.` : ''}`;
      parts.push(h('p', { class: ['my-result', myResult.result === 'won' ? 'ok' : ''] }, mine));
    }
    mountChildren(el.result, parts);
    el.result.className = `card result-card outcome-${r.outcome}${won ? ' won' : ''}`;
  }

  function renderHistory() {
    if (a.format === 'multi_round_sealed') {
      const rows = [];
      (a.rounds ?? []).forEach((round, i) => {
        round.forEach((b) => rows.push({ round: i + 1, ...b }));
      });
      rows.reverse();
      el.historyCount.textContent = plural(rows.length, 'bid');
      el.historyNote.textContent = rows.length === 0
        ? (a.round > 0 ? `Round ${a.round} is under way: its bids are sealed until it completes.` : 'No round has completed yet.')
        : a.round > 0 && !isFinal(a.status) ? `Round ${a.round} is sealed until it completes (${plural(a.bids_this_round ?? 0, 'bid')} so far).` : '';
      mountChildren(el.history, rows.map((b) => h('li', { class: 'bid-row', 'data-testid': 'bid-row' },
        h('span', { class: 'bid-who' }, avatar(b.bidder), h('span', { class: 'bid-bidder' }, b.bidder)),
        h('span', { class: 'bid-amount num' }, formatMoney(b.amount)),
        h('span', { class: 'bid-meta muted small' }, `round ${b.round}${b.amount === 0 ? ' · no bid' : ''}`))));
      return;
    }
    if (sealedOpen(a)) {
      const n = sealedInfo?.bid_count ?? a.bid_count ?? 0;
      el.historyCount.textContent = `sealed: ${plural(n, 'bid')}`;
      el.historyNote.textContent = `${plural(n, 'bidder')} ${n === 1 ? 'has' : 'have'} bid. Amounts and bidders are revealed when the auction closes.`;
      mountChildren(el.history);
      return;
    }
    el.historyCount.textContent = plural(bids.length, 'bid');
    el.historyNote.textContent = bids.length === 0 ? (isFinal(a.status) ? 'Nobody bid.' : 'No bids yet. Be the first!') : '';
    const rows = [...bids].reverse();
    const existing = new Map([...el.history.children].map((li) => [li.dataset.key, li]));
    const frag = [];
    for (const b of rows) {
      const key = `${b.seq}:${b.live ? 'live' : 'final'}`;
      let li = existing.get(key);
      if (!li) {
        li = bidRow(b);
        li.dataset.key = key;
        if (el.history.children.length > 0 && b.fresh) li.classList.add('row-new');
      }
      frag.push(li);
      b.fresh = false;
    }
    mountChildren(el.history, frag);
  }

  function bidRow(b) {
    const isLeaderAfter = b.leader_after && b.leader_after === b.bidder;
    const amount = b.amount ?? b.price_after;
    const meta = [];
    if (a.format === 'english') {
      if (b.price_after != null && b.price_after !== amount) meta.push(`price ${formatMoney(b.price_after)}`);
      if (b.leader_after) meta.push(isLeaderAfter ? 'took the lead' : `${b.leader_after} kept the lead`);
    }
    meta.push(formatTime(b.at));
    return h('li', { class: ['bid-row', me && b.bidder === me && 'mine'], 'data-testid': 'bid-row' },
      h('span', { class: 'bid-who' }, avatar(b.bidder), h('span', { class: 'bid-bidder' }, b.bidder), me && b.bidder === me ? h('span', { class: 'pill pill-small' }, 'you') : null),
      h('span', { class: 'bid-amount num' }, formatMoney(amount)),
      h('span', { class: 'bid-meta muted small' }, meta.join(' · ')));
  }

  function avatar(name) {
    return h('span', { class: 'avatar', 'aria-hidden': 'true', 'data-initial': (name || '?').slice(0, 1).toUpperCase() });
  }

  function renderChart() {
    const t = now();
    const starts = parseTime(a.starts_at);
    const end = isFinal(a.status) ? parseTime(a.closed_at) ?? parseTime(a.ends_at) : Math.min(Math.max(t, starts), parseTime(a.ends_at));
    if (a.format === 'multi_round_sealed') {
      const totals = new Map();
      const series = new Map();
      (a.rounds ?? []).forEach((round, i) => {
        for (const b of round) totals.set(b.bidder, (totals.get(b.bidder) ?? 0) + b.amount);
        for (const [bidder, total] of totals) {
          if (!series.has(bidder)) series.set(bidder, [[0, 0]]);
          series.get(bidder).push([i + 1, total / 100, `${bidder}: total ${formatMoney(total)} after round ${i + 1}`]);
        }
      });
      const top = [...series.entries()].sort((x, y) => (totals.get(y[0]) ?? 0) - (totals.get(x[0]) ?? 0)).slice(0, 6);
      chart.update({
        xType: 'number',
        xMin: 0,
        xFormat: (v) => (v === 0 ? 'start' : `R${v}`),
        yMin: 0,
        yFormat: (v) => formatMoney(Math.round(v * 100)),
        series: top.map(([name, points]) => ({ name, points })),
        empty: a.round > 0 ? 'Totals appear when the first round completes' : 'Waiting for the rounds to start',
      });
      return;
    }
    if (a.format === 'dutch') {
      const ends = parseTime(a.ends_at);
      const every = a.decrement_every_secs * 1000;
      const steps = Math.ceil((a.starting_price - a.floor_price) / a.decrement) + 1;
      const stride = Math.max(1, Math.ceil(steps / 240));
      const points = [];
      for (let i = 0; i <= steps; i += stride) {
        const x = starts + i * every;
        points.push([x, dutchPriceAt(a, x) / 100]);
      }
      points.push([ends, a.floor_price / 100]);
      const series = [{ name: 'Price', points, step: true, dots: false, cls: 'c1', area: true }];
      const markers = [];
      if (sold()) {
        const at = parseTime(a.closed_at);
        series.push({ name: 'Sale', points: [[at, a.result.price / 100, `${a.result.winner} took it at ${formatMoney(a.result.price)}`]], cls: 'c2' });
        markers.push({ x: at, label: 'sold', cls: 'marker-sold' });
      } else if (!isFinal(a.status)) {
        markers.push({ x: Math.max(starts, t), label: 'now' });
      }
      chart.update({ xType: 'time', xMin: starts, xMax: ends, yMin: 0, yFormat: (v) => formatMoney(Math.round(v * 100)), series, markers });
      return;
    }
    if (sealedOpen(a)) {
      chart.update({ series: [], empty: `Sealed: ${plural(sealedInfo?.bid_count ?? a.bid_count ?? 0, 'bid')}; amounts are shown after the close` });
      return;
    }
    if (isSealed(a.format)) {
      const points = bids.map((b) => [parseTime(b.at), b.amount / 100, `${b.bidder} bid ${formatMoney(b.amount)} at ${formatTime(b.at)}`]);
      chart.update({
        xType: 'time', xMin: starts, xMax: Math.max(end, starts + 1000), yFormat: (v) => formatMoney(Math.round(v * 100)),
        series: [{ name: 'Sealed bids', points, dots: true, line: false, cls: 'c1' }],
        empty: 'No bids were placed',
      });
      return;
    }
    if (t < starts && bids.length === 0) {
      chart.update({ series: [], empty: `Bidding opens at ${formatTime(starts)}` });
      return;
    }
    // English: the visible price after each bid, as steps, from the opening to now/the end.
    const points = [[starts, a.starting_price / 100, `opened at ${formatMoney(a.starting_price)}`]];
    for (const b of bids) {
      points.push([parseTime(b.at), b.price_after / 100, `${b.bidder} bid ${formatMoney(b.amount ?? b.price_after)} → price ${formatMoney(b.price_after)} (${formatTime(b.at)})`]);
    }
    const last = points[points.length - 1];
    if (end > last[0]) points.push([end, last[1]]);
    const markers = [];
    const orig = parseTime(a.original_ends_at);
    if ((a.extensions ?? 0) > 0 && orig >= starts && orig <= end) markers.push({ x: orig, label: 'original end', cls: 'marker-muted' });
    chart.update({
      xType: 'time', xMin: starts, xMax: Math.max(end, starts + 1000),
      yFormat: (v) => formatMoney(Math.round(v * 100)),
      label: `Price over time: ${plural(bids.length, 'bid')}, ${bids.length ? `from ${formatMoney(bids[0].price_after)} to ${formatMoney(bids[bids.length - 1].price_after)}` : `starting at ${formatMoney(a.starting_price)}`}`,
      series: [{ name: 'Price', points, step: true, area: true, dots: 'marked', cls: 'c1' }],
      markers,
      empty: 'No bids yet',
    });
  }

  function renderRounds() {
    if (!el.rounds) return;
    const rounds = a.rounds ?? [];
    const participants = a.participants ?? [];
    if (participants.length === 0) {
      mountChildren(el.rounds, h('p', { class: 'muted' }, `No one has joined yet. ${a.min_bidders} ${a.min_bidders === 1 ? 'bidder is' : 'bidders are'} needed to start.`));
      return;
    }
    const totals = new Map((a.totals ?? []).map((t) => [t.bidder, t.total]));
    const order = (a.totals?.length ? a.totals.map((t) => t.bidder) : participants).concat(participants.filter((p) => !totals.has(p)));
    const seen = new Set();
    const rows = order.filter((p) => !seen.has(p) && seen.add(p));
    const lead = a.totals?.[0]?.total > 0 ? a.totals[0].bidder : null;
    const table = h('table', { class: 'table', 'data-testid': 'rounds-table' },
      h('caption', { class: 'visually-hidden' }, 'Bids per revealed round and cumulative totals'),
      h('thead', null, h('tr', null,
        h('th', { scope: 'col' }, 'Bidder'),
        rounds.map((_, i) => h('th', { scope: 'col', class: 'num' }, `Round ${i + 1}`)),
        !isFinal(a.status) && a.round > rounds.length ? h('th', { scope: 'col', class: 'num' }, `Round ${a.round}`) : null,
        h('th', { scope: 'col', class: 'num' }, 'Total'))),
      h('tbody', null, rows.map((p) => h('tr', { class: [p === lead && 'leader-row', me === p && 'mine'] },
        h('th', { scope: 'row' }, p, p === lead ? h('span', { class: 'pill pill-ok pill-small' }, 'leads') : null, me === p ? h('span', { class: 'pill pill-small' }, 'you') : null),
        rounds.map((round) => {
          const b = round.find((x) => x.bidder === p);
          return h('td', { class: 'num' }, b ? (b.amount === 0 ? '—' : formatMoney(b.amount)) : '—');
        }),
        !isFinal(a.status) && a.round > rounds.length ? h('td', { class: 'num muted' }, 'sealed') : null,
        h('td', { class: 'num strong' }, formatMoney(totals.get(p) ?? 0))))));
    mountChildren(el.rounds, table);
  }

  // ------------------------------------------------------------------ bid form

  function formKey() {
    const t = now();
    return JSON.stringify([statusNow(t), a.format, a.status, a.round, (a.participants ?? []).includes(me), a.participants?.length,
      !!a.highest_bid, a.reserve_met, session.token ? me : null, a.buy_now_price, hasBids()]);
  }

  function hasBids() {
    return (a.bid_count ?? 0) > 0 || (a.rounds?.length ?? 0) > 0 || (a.bids_this_round ?? 0) > 0;
  }

  function renderBidForm(force = false) {
    if (!a || !el.bidCard) return;
    const key = formKey();
    if (!force && key === lastFormKey) {
      updateFormHints();
      return;
    }
    // Keep what the user typed across re-renders.
    const typed = el.bidCard.querySelector('#bid-amount')?.value ?? '';
    const typedMax = el.bidCard.querySelector('#bid-max')?.value ?? '';
    const focused = document.activeElement?.id;
    lastFormKey = key;
    const t = now();
    const status = statusNow(t);
    const parts = [h('h2', { id: 'bid-h' }, a.format === 'dutch' ? 'Buy' : a.format === 'multi_round_sealed' ? 'Take part' : 'Place a bid')];
    const isSeller = me && me === a.seller;

    if (isFinal(a.status)) {
      parts.push(h('p', { class: 'muted' }, a.status === 'cancelled' ? 'This auction was cancelled.' : 'Bidding has ended.'));
    } else if (!session.token) {
      parts.push(h('p', null, 'Log in with your account token to bid.'), h('a', { href: '#/login', class: 'btn btn-primary btn-block' }, 'Log in to bid'));
    } else if (isSeller) {
      parts.push(h('p', { class: 'muted' }, 'You are the seller of this auction.'));
      if (a.format === 'multi_round_sealed' && status === 'open_for_joining') parts.push(startControls());
    } else if (status === 'scheduled') {
      parts.push(h('p', { class: 'muted' }, `Bidding opens at ${formatTime(a.starts_at)}.`));
    } else if (status === 'closing') {
      parts.push(h('p', { class: 'muted' }, a.format === 'multi_round_sealed' ? 'The round is closing…' : 'Time is up: the auction is closing.'));
    } else if (a.format === 'multi_round_sealed') {
      parts.push(...multiRoundControls(status));
    } else {
      parts.push(bidForm());
    }
    if (!isFinal(a.status) && session.token && (isSeller || session.account?.roles?.includes('admin'))) {
      parts.push(cancelControls());
    }
    parts.push(el.message);
    mountChildren(el.bidCard, parts);
    const amount = el.bidCard.querySelector('#bid-amount');
    if (amount && typed) amount.value = typed;
    const max = el.bidCard.querySelector('#bid-max');
    if (max && typedMax) max.value = typedMax;
    if (focused) document.getElementById(focused)?.focus();
    updateFormHints();
  }

  function updateFormHints() {
    const hint = el.bidCard.querySelector('#bid-amount-hint');
    if (hint && a.format === 'english') hint.textContent = `At least ${formatMoney(a.min_next_bid)}`;
    const amount = el.bidCard.querySelector('#bid-amount');
    if (amount && a.format === 'english') amount.placeholder = formatMoney(a.min_next_bid);
    const minBtn = el.bidCard.querySelector('#bid-fill-min');
    if (minBtn) minBtn.textContent = `Min ${formatMoney(a.min_next_bid ?? a.starting_price)}`;
  }

  function bidForm() {
    const english = a.format === 'english';
    const sealed = isSealed(a.format);
    const dutch = a.format === 'dutch';
    const input = h('input', {
      id: 'bid-amount', name: 'amount', class: 'input input-money num', inputmode: 'decimal', autocomplete: 'off',
      placeholder: formatMoney(english ? a.min_next_bid : dutch ? dutchPriceAt(a, now()) : a.starting_price),
      'aria-describedby': 'bid-amount-hint',
    });
    const submit = h('button', { type: 'submit', id: 'bid-submit', class: ['btn', dutch ? '' : 'btn-primary', 'btn-block', 'btn-large'] },
      sealed ? 'Place sealed bid' : dutch ? 'Bid this amount' : 'Place bid');
    const fields = [];
    if (sealed) {
      fields.push(h('div', { class: 'notice notice-info' },
        h('strong', null, 'Bids are hidden. '),
        `Nobody sees amounts until the close. You get one bid: a new bid replaces yours. Minimum ${formatMoney(a.starting_price)}.`,
        a.format === 'sealed_second_price' ? ' The winner pays the second-highest bid.' : ' The winner pays their own bid.'));
    }
    const minFill = english ? h('button', { type: 'button', class: 'btn btn-small btn-ghost', id: 'bid-fill-min' }, `Min ${formatMoney(a.min_next_bid)}`) : null;
    minFill?.addEventListener('click', () => {
      input.value = formatMoney(a.min_next_bid);
      input.focus();
    });
    fields.push(h('div', { class: 'field' },
      h('div', { class: 'label-row' }, h('label', { for: 'bid-amount' }, sealed ? 'Your sealed bid' : 'Your bid'), minFill),
      input,
      h('p', { class: 'hint', id: 'bid-amount-hint' },
        english ? `At least ${formatMoney(a.min_next_bid)}` : dutch ? 'At least the current price; you pay the current price.' : `At least ${formatMoney(a.starting_price)}`)));
    let maxInput = null;
    if (english) {
      maxInput = h('input', { id: 'bid-max', name: 'max_amount', class: 'input input-money num', inputmode: 'decimal', autocomplete: 'off', placeholder: 'optional', 'aria-describedby': 'bid-max-hint' });
      fields.push(h('div', { class: 'field' },
        h('label', { for: 'bid-max' }, 'Proxy maximum (optional)'),
        maxInput,
        h('p', { class: 'hint', id: 'bid-max-hint' }, 'We bid for you, one step at a time, up to this amount. Nobody sees it. You can leave "Your bid" empty.')));
    }
    const form = h('form', { class: 'stack', id: 'bid-form', novalidate: true }, fields, submit);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const amount = parseMoney(input.value);
      const max = maxInput ? parseMoney(maxInput.value) : { value: null };
      input.removeAttribute('aria-invalid');
      maxInput?.removeAttribute('aria-invalid');
      if (amount.error) return fail(input, amount.error);
      if (max.error) return fail(maxInput, max.error);
      if (amount.value == null && max.value == null) return fail(input, english ? 'Enter a bid or a proxy maximum.' : 'Enter your bid.');
      if (amount.value === 0) return fail(input, 'A bid must be more than 0.00.');
      if (amount.value != null && max.value != null && max.value < amount.value) return fail(maxInput, 'The maximum must be at least your bid.');
      const body = {};
      if (amount.value != null) body.amount = amount.value;
      if (max.value != null) body.max_amount = max.value;
      submit.disabled = true;
      const label = submit.textContent;
      submit.textContent = 'Placing…';
      try {
        const ok = await placeBid(body);
        if (ok) {
          // The form may have been redrawn meanwhile: clear the inputs on the page now.
          for (const sel of ['#bid-amount', '#bid-max']) {
            const live = el.bidCard.querySelector(sel);
            if (live) live.value = '';
          }
        }
      } finally {
        submit.disabled = false;
        submit.textContent = label;
      }
    });
    const parts = [];
    if (dutch) {
      const price = dutchPriceAt(a, now());
      el.takeButton = h('button', { type: 'button', class: 'btn btn-primary btn-block btn-large', id: 'bid-take', 'data-amount': String(price) }, `Take it at ${formatMoney(price)}`);
      el.takeButton.addEventListener('click', async () => {
        const amt = dutchPriceAt(a, now());
        el.takeButton.disabled = true;
        try {
          await placeBid({ amount: amt });
        } finally {
          if (el.takeButton) el.takeButton.disabled = false;
        }
      });
      parts.push(h('p', { class: 'muted' }, 'The first bid at or above the current price wins at once.'), el.takeButton,
        h('details', { class: 'more' }, h('summary', null, 'Or bid a specific amount'), form));
    } else {
      parts.push(form);
    }
    if (english && a.buy_now_price != null && (!a.highest_bid || (a.has_reserve && !a.reserve_met))) {
      parts.push(twoStep({ id: 'buy-now-button', label: `Buy now for ${formatMoney(a.buy_now_price)}`, confirm: `Confirm: pay ${formatMoney(a.buy_now_price)} now`, cls: 'btn-block', action: async () => {
        const r = await api.buy(id);
        say('ok', `You bought it for ${formatMoney(r.purchase?.price ?? a.buy_now_price)}.`);
        if (r.auction) {
          a = r.auction;
          renderAll();
        }
      } }));
    }
    return h('div', { class: 'stack' }, parts);
  }

  function fail(input, msg) {
    input?.setAttribute('aria-invalid', 'true');
    input?.focus();
    say('error', msg);
  }

  function multiRoundControls(status) {
    const parts = [];
    const joined = (a.participants ?? []).includes(me);
    if (status === 'open_for_joining') {
      if (joined) {
        parts.push(h('p', { class: 'notice notice-ok' }, `You have joined. Round 1 starts when the seller starts it, or when joining closes if ${a.min_bidders} have joined.`));
      } else {
        parts.push(h('p', { class: 'muted' }, `Join to take part: bid once per sealed round for up to ${a.max_rounds} rounds; the highest cumulative total wins.`));
        const join = h('button', { type: 'button', class: 'btn btn-primary btn-block btn-large', id: 'join-button' }, 'Join this auction');
        join.addEventListener('click', () => act(join, async () => {
          a = await api.join(id);
          say('ok', 'You joined. Wait for round 1 to start.');
          renderAll();
        }));
        parts.push(join);
      }
      return parts;
    }
    if (!joined) {
      parts.push(h('p', { class: 'muted' }, 'Joining has closed; only participants bid in the rounds. You can watch them here.'));
      return parts;
    }
    parts.push(h('div', { class: 'notice notice-info' }, h('strong', null, `Round ${a.round}. `),
      `Your bid is sealed until the round completes. One bid per round, at least ${formatMoney(a.starting_price)}; it adds to your total.`));
    parts.push(bidForm());
    return parts;
  }

  function startControls() {
    const n = a.participants?.length ?? 0;
    const enough = n >= a.min_bidders;
    const start = h('button', { type: 'button', class: 'btn btn-primary btn-block', id: 'start-button', disabled: !enough }, enough ? 'Start round 1' : `Waiting for ${a.min_bidders - n} more ${a.min_bidders - n === 1 ? 'bidder' : 'bidders'}`);
    start.addEventListener('click', () => act(start, async () => {
      a = await api.start(id);
      say('ok', 'Round 1 has started.');
      renderAll();
    }));
    return h('div', { class: 'stack' }, h('p', { class: 'muted' }, `${plural(n, 'bidder')} joined; ${a.min_bidders} needed.`), start);
  }

  function cancelControls() {
    const admin = session.account?.roles?.includes('admin');
    if (!admin && hasBids()) return h('p', { class: 'muted small' }, 'It can no longer be cancelled: it has bids.');
    return twoStep({ id: 'cancel-button', label: 'Cancel auction', confirm: 'Confirm: cancel this auction', cls: 'btn-danger-ghost btn-block', action: async () => {
      const r = await api.cancel(id);
      say('ok', 'The auction was cancelled.');
      if (r.auction) {
        a = r.auction;
        renderAll();
      }
    } });
  }

  /** A button that asks for a second click within 5 s (no window.confirm dialogs). */
  function twoStep({ id: bid, label, confirm, cls, action }) {
    const b = h('button', { type: 'button', class: ['btn', cls], id: bid }, label);
    let armed = null;
    b.addEventListener('click', () => {
      if (!armed) {
        b.textContent = confirm;
        b.classList.add('armed');
        armed = setTimeout(() => {
          armed = null;
          b.textContent = label;
          b.classList.remove('armed');
        }, 5000);
        return;
      }
      clearTimeout(armed);
      armed = null;
      b.classList.remove('armed');
      b.textContent = label;
      act(b, action);
    });
    return b;
  }

  async function act(button, fn) {
    button.disabled = true;
    try {
      await fn();
    } catch (e) {
      say('error', describeError(e, formatMoney));
    } finally {
      button.disabled = false;
    }
  }

  let saidAt = 0;
  function say(kind, text) {
    saidAt = Date.now();
    el.message.className = `bid-message bid-message-${kind}`;
    // 'info' while a bid is on its way; 'ok', 'warn' or 'error' once it is answered.
    el.message.dataset.kind = kind;
    el.message.textContent = text;
  }

  async function placeBid(body) {
    say('info', 'Placing your bid…');
    const round = a.round;
    let r;
    try {
      r = live ? await live.bid(body) : await httpBid(body);
    } catch (e) {
      say('error', describeError(e, formatMoney));
      return false;
    }
    if (r.status >= 200 && r.status < 300) {
      const b = r.body;
      if (b.sealed) {
        if (a.format === 'multi_round_sealed') say('ok', `Bid placed for round ${round}. It stays sealed until the round completes.`);
        else say('ok', `Sealed bid placed${b.replaced ? '; it replaces your earlier bid' : ''}. Amounts stay hidden until the close.`);
      } else if (a.format === 'dutch') {
        say('ok', b.leading ? `You bought it at ${formatMoney(b.price)}!` : `Bid accepted at ${formatMoney(b.price)}.`);
      } else if (b.leading) {
        say('ok', `Bid accepted: you lead at ${formatMoney(b.price)}.${body.max_amount != null ? ` We'll bid for you up to ${formatMoney(body.max_amount)}.` : ''}${b.extended ? ' The end was extended.' : ''}`);
      } else {
        say('warn', `Bid accepted, but ${b.leader} still leads at ${formatMoney(b.price)} (a higher proxy maximum). Next bid at least ${formatMoney(b.min_next_bid)}.`);
      }
      if (!b.sealed && a.format === 'english') {
        // Apply the answer at once; the event follows.
        a.highest_bid = { bidder: b.leader, amount: b.price };
        if (b.min_next_bid != null) a.min_next_bid = b.min_next_bid;
        if (b.reserve_met != null) a.reserve_met = b.reserve_met;
        if (b.ends_at && b.ends_at !== a.ends_at) a.ends_at = b.ends_at;
        renderPrice();
        renderTick();
        updateFormHints();
      }
      scheduleRefresh();
      return true;
    }
    const err = r.body?.error ?? {};
    const { code, message, ...details } = err;
    const apiErr = new ApiError(r.status, code, message ?? `error ${r.status}`, details);
    say('error', describeError(apiErr, formatMoney));
    if (code === 'bid_too_low' && details.min_next_bid != null && a.format === 'english') {
      a.min_next_bid = details.min_next_bid;
      updateFormHints();
      renderPrice();
    }
    if (r.status === 401 && session.token) {
      // The socket's token may be stale; reconnect with the current one.
      restartLive();
    }
    return false;
  }

  function httpBid(body) {
    return api.bid(id, body).then((b) => ({ status: 201, body: b }), (e) => {
      if (e instanceof ApiError) return { status: e.status, body: { error: { code: e.code, message: e.message, ...e.details } } };
      throw e;
    });
  }

  // ------------------------------------------------------------------ details

  function renderDetails() {
    const rows = [];
    const add = (k, v) => rows.push(h('dt', null, k), h('dd', null, v));
    add('Format', FORMATS.find((f) => f.value === a.format)?.long ?? a.format);
    rows.push(h('dd', { class: 'kv-help muted small' }, FORMAT_HELP[a.format] ?? ''));
    add('Seller', a.seller);
    add('Starting price', h('span', { class: 'num' }, formatMoney(a.starting_price)));
    if (a.format === 'english') {
      if (Array.isArray(a.increment)) {
        add('Increment', h('ul', { class: 'plain' }, a.increment.map((b) => h('li', { class: 'num' }, `from ${formatMoney(b.from)}: +${formatMoney(b.increment)}`))));
      } else if (a.increment != null) {
        add('Increment', h('span', { class: 'num' }, formatMoney(a.increment)));
      }
      if (a.buy_now_price != null) add('Buy now', h('span', { class: 'num' }, formatMoney(a.buy_now_price)));
      add('Soft close', a.soft_close
        ? `A bid in the last ${formatDuration(a.soft_close.window_secs * 1000)} extends the end by ${formatDuration(a.soft_close.extend_secs * 1000)} (at most ${plural(a.soft_close.max_extensions, 'time')})`
        : 'None: ends on time');
    }
    if (a.format !== 'dutch') {
      let reserve = 'No reserve';
      if (a.has_reserve) {
        if (a.format !== 'english') reserve = isFinal(a.status) ? (a.result?.outcome === 'reserve_not_met' ? 'Yes, not met' : 'Yes') : 'Yes (checked at the close)';
        else reserve = a.reserve_met ? 'Yes, met' : isFinal(a.status) ? 'Yes, not met' : 'Yes, not met yet';
      }
      add('Reserve', reserve);
    }
    if (a.format === 'dutch') {
      add('Decrement', h('span', { class: 'num' }, `${formatMoney(a.decrement)} every ${formatDuration(a.decrement_every_secs * 1000)}`));
      add('Floor price', h('span', { class: 'num' }, formatMoney(a.floor_price)));
    }
    if (a.format === 'multi_round_sealed') {
      add('Rounds', `${a.min_rounds} to ${a.max_rounds}, ${formatDuration(a.round_secs * 1000)} each`);
      add('Bidders needed', String(a.min_bidders));
      add('Joining window', formatDuration(a.join_secs * 1000));
      add('Participants', (a.participants ?? []).length ? (a.participants ?? []).join(', ') : 'none yet');
    }
    add('Starts', formatDateTime(a.starts_at));
    if (a.format !== 'multi_round_sealed') {
      add('Ends', h('span', null, formatDateTime(a.ends_at), a.original_ends_at && a.original_ends_at !== a.ends_at ? h('span', { class: 'muted small' }, ` (originally ${formatTime(a.original_ends_at)})`) : null));
    }
    if (a.closed_at) add('Closed', formatDateTime(a.closed_at));
    add('Hosted by', a.worker != null ? `worker node ${a.worker}` : '—');
    add('Events', h('span', { class: 'num' }, `seq ${a.seq}`));
    mountChildren(el.detailsBody, rows);
  }

  // ------------------------------------------------------------------ events

  function flash(node, cls = 'flash') {
    node.classList.remove(cls);
    void node.offsetWidth; // restart the animation
    node.classList.add(cls);
    setTimeout(() => node.classList.remove(cls), 2100);
  }

  function onEvent(e) {
    if (!a) return;
    a.seq = Math.max(a.seq ?? 0, e.seq);
    switch (e.kind) {
      case 'bid_accepted': {
        if (a.format === 'english' || a.format === 'dutch') {
          a.highest_bid = { bidder: e.leader, amount: e.price };
          a.bid_count = (a.bid_count ?? 0) + 1;
          if (!bids.some((b) => b.seq === e.seq)) {
            bids.push({ seq: e.seq, bid_id: e.bid_id, bidder: e.bidder, amount: null, price_after: e.price, leader_after: e.leader, at: e.ts, live: true, fresh: true });
          }
          renderPrice();
          flash(el.price);
          renderHistory();
          renderChart();
          if (me && e.leader !== me && bids.some((b) => b.bidder === me) && a.format === 'english') {
            say('warn', `You have been outbid: ${e.leader} leads at ${formatMoney(e.price)}.`);
          }
        }
        break;
      }
      case 'extended': {
        a.ends_at = e.ends_at;
        a.extensions = e.extensions;
        el.countdown.dataset.endsAt = e.ends_at;
        renderTick();
        renderPrice();
        flash(el.countBox, 'flash-extended');
        flash(el.extensions);
        el.announce.textContent = `Extended by soft close: now ends at ${formatTime(e.ends_at)}.`;
        extendedNoteUntil = Date.now() + 6000;
        renderTick();
        break;
      }
      case 'sealed_bid': {
        if (a.format === 'multi_round_sealed') {
          a.bids_this_round = e.bid_count;
        } else {
          a.bid_count = e.bid_count;
          sealedInfo = { bid_count: e.bid_count };
        }
        renderPrice();
        renderHistory();
        renderChart();
        flash(el.bidCount);
        break;
      }
      case 'round_started': {
        a.round = e.round;
        a.ends_at = e.round_ends_at;
        a.bids_this_round = 0;
        el.announce.textContent = `Round ${e.round} has started.`;
        renderAll();
        break;
      }
      case 'closed':
      case 'cancelled': {
        a.status = e.kind === 'closed' ? 'closed' : 'cancelled';
        a.result = e.result ?? (e.kind === 'cancelled' ? { outcome: 'cancelled', cancelled_by: e.cancelled_by } : a.result);
        a.closed_at = e.ts;
        el.announce.textContent = describeOutcome(a.result);
        // An old "you lead" message would now mislead; a fresh answer (a Dutch take) stays.
        if (Date.now() - saidAt > 5000) say('info', '');
        renderAll();
        flash(el.result);
        setLive(live?.state ?? 'reconnecting');
        loadMyResult();
        break;
      }
      case 'reassigned':
        a.worker = e.worker;
        renderDetails();
        break;
      default:
        break;
    }
    scheduleRefresh();
  }

  function scheduleRefresh(delay = 250) {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(refresh, delay);
  }

  async function refresh() {
    if (stopped) return;
    if (refreshing) {
      refreshAgain = true;
      return;
    }
    refreshing = true;
    try {
      const [view, history] = await Promise.all([api.auction(id, { stale: true }), api.bids(id, { stale: true })]);
      if (stopped) return;
      // Never go back in time: a stale read may trail an event we already applied.
      if ((view.seq ?? 0) >= (a?.seq ?? 0) || isFinal(view.status)) {
        applyLoaded(view, history);
        live?.resync(view.seq);
        renderAll();
        if (isFinal(a.status)) loadMyResult();
      }
    } catch (e) {
      console.warn('refresh failed', e);
    } finally {
      refreshing = false;
      if (refreshAgain) {
        refreshAgain = false;
        scheduleRefresh();
      }
    }
  }

  function applyLoaded(view, history) {
    a = view;
    if (history?.sealed) {
      sealedInfo = { bid_count: history.bid_count };
      bids = [];
    } else {
      sealedInfo = null;
      const fresh = new Set(bids.filter((b) => b.fresh).map((b) => b.seq));
      bids = (history?.bids ?? []).map((b) => ({ ...b, fresh: fresh.has(b.seq) }));
    }
  }

  async function loadMyResult() {
    if (!session.token || !a || !isFinal(a.status) || myResultFor === a.seq) return;
    // Only ask where there is something to say (the route answers 404 to anyone else).
    const involved = me === a.seller || session.account?.roles?.includes('admin')
      || bids.some((b) => b.bidder === me) || (a.participants ?? []).includes(me) || a.result?.winner === me;
    if (!involved) return;
    myResultFor = a.seq;
    try {
      myResult = await api.result(id);
    } catch {
      myResult = null;
    }
    if (!stopped) renderResult();
  }

  function setLive(state) {
    el.live.dataset.state = state;
    el.liveText.textContent = LIVE_TEXT[state] ?? state;
    el.liveNote.textContent = isFinal(a?.status) && live?.ended && state !== 'ws' ? '· stream ended' : '';
  }

  function startLive() {
    live = new LiveFeed({
      auctionId: id,
      after: a.seq,
      token: session.token,
      onEvent,
      onState: setLive,
      onGap: () => scheduleRefresh(0),
    }).start();
  }

  function restartLive() {
    live?.stop();
    startLive();
  }

  // ------------------------------------------------------------------ start

  async function load() {
    try {
      const [view, history] = await Promise.all([api.auction(id), api.bids(id)]);
      if (stopped) return;
      applyLoaded(view, history);
      build();
      renderAll();
      startLive();
      loadMyResult();
    } catch (e) {
      if (stopped) return;
      container.setAttribute('aria-busy', 'false');
      const notFound = e instanceof ApiError && e.status === 404;
      mountChildren(container,
        h('nav', { class: 'breadcrumb' }, h('a', { href: '#/' }, '← All auctions')),
        h('div', { class: 'empty-state' },
          h('h1', null, notFound ? `Auction #${id} does not exist` : 'Could not load this auction'),
          h('p', { class: 'muted' }, notFound ? 'Check the address, or pick one from the list.' : describeError(e, formatMoney)),
          notFound ? h('a', { href: '#/', class: 'btn btn-primary' }, 'All auctions') : retryButton()));
    }
  }

  function retryButton() {
    const b = h('button', { type: 'button', class: 'btn btn-primary' }, 'Try again');
    b.addEventListener('click', () => {
      mountChildren(container, h('p', { class: 'loading' }, 'Loading auction…'));
      load();
    });
    return b;
  }

  const ticker = setInterval(() => {
    if (!a || !el.countdown) return;
    renderTick();
  }, 250);
  const chartTimer = setInterval(() => {
    if (a && el.countdown && !isFinal(a.status) && document.visibilityState === 'visible') renderChart();
  }, 5000);
  const onVisible = () => {
    if (document.visibilityState === 'visible' && a) scheduleRefresh(0);
  };
  document.addEventListener('visibilitychange', onVisible);

  load();
  void toast;

  return () => {
    stopped = true;
    clearInterval(ticker);
    clearInterval(chartTimer);
    clearTimeout(refreshTimer);
    document.removeEventListener('visibilitychange', onVisible);
    live?.stop();
    chart?.destroy();
  };
}
