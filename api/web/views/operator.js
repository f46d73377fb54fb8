// #/operator: the cluster as this node sees it (GET /v1/cluster, /ready), the workers
// and their hosted auctions (GET /v1/workers), and this node's last 15 minutes of
// figures (GET /v1/metrics/history): bids/s, p99 bid latency, Raft commit p99.
// Everything refreshes every 5 s while the tab is visible.

import { h, mountChildren, formatAgo, parseTime, formatTime } from '../format.js';
import { api, describeError } from '../api.js';
import { createChart } from '../chart.js';

const POLL_MS = 5000;

export function mount(root) {
  let stopped = false;
  let controller = null;
  let lastOk = 0;

  const updated = h('span', { class: 'muted small' });
  const pause = h('button', { type: 'button', class: 'btn btn-small btn-ghost', 'aria-pressed': 'false' }, 'Pause');
  let paused = false;
  pause.addEventListener('click', () => {
    paused = !paused;
    pause.textContent = paused ? 'Resume' : 'Pause';
    pause.setAttribute('aria-pressed', String(paused));
    if (!paused) load();
  });

  const notice = h('div');
  const summary = h('div', { class: 'summary-grid' });
  const members = h('div', { class: 'table-wrap' });
  const workers = h('div', { class: 'table-wrap', 'data-testid': 'workers' });
  const metricsNote = h('p', { class: 'muted small' });

  const chartCard = (title, sub) => {
    const card = h('section', { class: 'card chart-card' }, h('div', { class: 'card-head' }, h('h3', null, title), h('span', { class: 'muted small' }, sub)));
    return card;
  };
  const bidsCard = chartCard('Bids per second', 'accepted bids, cluster-wide');
  const bidP99Card = chartCard('Bid latency p99', 'POST …/bids on this node, ms');
  const commitP99Card = chartCard('Raft commit p99', 'proposals by this node, ms');
  const charts = {
    bids: createChart(bidsCard, { testid: 'chart-bids', label: 'Bids per second over the last minutes', height: 180 }),
    bidP99: createChart(bidP99Card, { testid: 'chart-bid-p99', label: 'p99 bid latency in milliseconds', height: 180 }),
    commitP99: createChart(commitP99Card, { testid: 'chart-commit-p99', label: 'p99 Raft commit latency in milliseconds', height: 180 }),
  };

  root.appendChild(h('div', { class: 'stack-lg' },
    h('div', { class: 'page-head' },
      h('div', null, h('h1', null, 'Operator'), h('p', { class: 'muted' }, 'The cluster, its workers and this node\'s recent figures. Refreshes every 5 seconds.')),
      h('div', { class: 'toolbar-right' }, updated, pause)),
    notice,
    summary,
    h('section', { class: 'card', 'aria-labelledby': 'members-h' }, h('div', { class: 'card-head' }, h('h2', { id: 'members-h' }, 'Members')), members),
    h('section', { 'aria-labelledby': 'metrics-h', class: 'stack' },
      h('div', { class: 'card-head' }, h('h2', { id: 'metrics-h' }, 'This node, last 15 minutes'), metricsNote),
      h('div', { class: 'chart-grid' }, bidsCard, bidP99Card, commitP99Card)),
    h('section', { class: 'card', 'aria-labelledby': 'workers-h' }, h('div', { class: 'card-head' }, h('h2', { id: 'workers-h' }, 'Workers')), workers)));

  function stat(label, value, opts = {}) {
    return h('div', { class: ['stat', 'card', opts.cls] },
      h('div', { class: 'stat-label' }, label),
      h('div', { class: ['stat-value', opts.mono ? 'mono' : 'num'], title: opts.title ?? null }, value),
      opts.sub ? h('div', { class: 'stat-sub muted small' }, opts.sub) : null);
  }

  function renderCluster(c, ready) {
    const leaderId = c.leader?.id ?? (typeof c.leader === 'number' ? c.leader : null);
    const leaderAddr = c.leader?.addr ?? c.members?.find((m) => m.id === leaderId)?.addr;
    const lagBehind = (c.commit_index ?? 0) - (c.applied_index ?? 0);
    mountChildren(summary,
      stat('Leader', leaderId != null ? `node ${leaderId}` : 'none', { sub: leaderAddr ?? 'no leader known', cls: leaderId == null ? 'stat-bad' : null }),
      stat('Term', String(c.term ?? '—')),
      stat('This node', `node ${c.node_id}`, { sub: `${c.role}${c.member === false ? ' · removed' : ''} · ${ready?.ok ? 'ready' : 'not ready'}`, cls: ready?.ok ? null : 'stat-bad' }),
      stat('Commit index', String(c.commit_index ?? '—'), { sub: `last log ${c.last_log_index ?? '—'}` }),
      stat('Applied index', String(c.applied_index ?? '—'), { sub: lagBehind > 0 ? `${lagBehind} behind commit` : 'caught up', cls: lagBehind > 50 ? 'stat-warn' : null }),
      stat('Snapshot', c.snapshot_index != null ? String(c.snapshot_index) : 'none', { sub: c.purged_index != null ? `log purged to ${c.purged_index}` : 'log not purged' }),
      stat('State hash', shortHash(c.state_hash), { mono: true, title: c.state_hash ?? '', sub: 'equal on every caught-up node', cls: 'stat-wide' }),
    );

    const rows = (c.members ?? []).map((m) => {
      let lag = m.lag;
      let lagNote = null;
      if (lag === undefined || lag === null) {
        if (m.matched_index != null && c.last_log_index != null) {
          lag = Math.max(0, c.last_log_index - m.matched_index);
          lagNote = 'from matched index';
        } else {
          lag = null;
        }
      }
      const isLeader = m.role === 'leader';
      return h('tr', { class: [m.id === c.node_id && 'this-node'], 'data-testid': 'member-row' },
        h('th', { scope: 'row' }, `node ${m.id}`, m.id === c.node_id ? h('span', { class: 'pill pill-small' }, 'this node') : null),
        h('td', { class: 'mono' }, m.addr),
        h('td', null, h('span', { class: ['badge', `role-${m.role}`] }, m.role)),
        h('td', { class: 'hide-sm' }, m.voter ? 'voter' : 'non-voter'),
        h('td', { class: 'num' }, m.matched_index != null ? String(m.matched_index) : '—'),
        h('td', { class: ['num', lag > 100 ? 'bad' : lag > 0 ? 'warn' : ''], title: lagNote }, isLeader ? '0' : lag == null ? '—' : `${lag}`));
    });
    mountChildren(members,
      h('table', { class: 'table', 'data-testid': 'cluster-members' },
        h('caption', { class: 'visually-hidden' }, 'Cluster members'),
        h('thead', null, h('tr', null,
          h('th', { scope: 'col' }, 'Node'), h('th', { scope: 'col' }, 'Address'), h('th', { scope: 'col' }, 'Role'),
          h('th', { scope: 'col', class: 'hide-sm' }, 'Vote'), h('th', { scope: 'col', class: 'num' }, 'Matched index'), h('th', { scope: 'col', class: 'num' }, 'Lag (entries)'))),
        h('tbody', null, rows)),
      c.role !== 'leader' && !(c.members ?? []).some((m) => m.matched_index != null)
        ? h('p', { class: 'muted small' }, `Replication progress is known to the leader only; this page is served by node ${c.node_id}, a ${c.role}. Open the operator page on node ${leaderId ?? '?'} for lag figures.`)
        : null);
  }

  function shortHash(hash) {
    if (!hash) return '—';
    return hash.length > 16 ? `${hash.slice(0, 8)}…${hash.slice(-8)}` : hash;
  }

  function renderWorkers(w) {
    const list = w.workers ?? [];
    if (list.length === 0) {
      mountChildren(workers, h('p', { class: 'muted' }, 'No worker has registered.'));
      return;
    }
    mountChildren(workers,
      h('table', { class: 'table' },
        h('caption', { class: 'visually-hidden' }, 'Workers'),
        h('thead', null, h('tr', null,
          h('th', { scope: 'col' }, 'Worker'), h('th', { scope: 'col' }, 'Status'), h('th', { scope: 'col', class: 'hide-sm' }, 'Address'),
          h('th', { scope: 'col' }, 'Load'), h('th', { scope: 'col' }, 'Hosted auctions'))),
        h('tbody', null, list.map((x) => {
          const pct = x.max_auctions ? Math.min(100, (x.hosted / x.max_auctions) * 100) : 0;
          const bar = h('span', { class: 'bar-fill' });
          bar.style.width = `${pct.toFixed(1)}%`;
          const shown = (x.auctions ?? []).slice(0, 24);
          const more = (x.auctions ?? []).length - shown.length;
          return h('tr', { 'data-testid': 'worker-row' },
            h('th', { scope: 'row' }, `node ${x.node_id}`),
            h('td', null, h('span', { class: ['status-dot', x.live ? 'ok' : 'bad'], 'aria-hidden': 'true' }), x.live ? 'live' : 'down',
              h('div', { class: 'muted small' }, x.last_seen_ms_ago != null ? `seen ${formatAgo(x.last_seen_ms_ago)}` : 'never seen')),
            h('td', { class: 'mono small hide-sm' }, x.addr, h('div', { class: 'muted' }, `udp ${x.udp_addr ?? '—'}`)),
            h('td', { class: 'load' }, h('div', { class: 'tabular' }, `${x.hosted} / ${x.max_auctions}`), h('span', { class: 'bar', role: 'img', 'aria-label': `${pct.toFixed(0)}% of capacity` }, bar),
              x.reported != null ? h('div', { class: 'muted small' }, `reports ${x.reported} live`) : null),
            h('td', null, shown.length === 0 ? h('span', { class: 'muted' }, 'none')
              : h('span', { class: 'id-list' }, shown.map((id) => h('a', { href: `#/auctions/${id}`, class: 'id-chip' }, `#${id}`)), more > 0 ? h('span', { class: 'muted small' }, ` +${more} more`) : null)));
        }))));
  }

  function renderMetrics(m) {
    const samples = m.samples ?? [];
    const points = (key) => samples.map((s) => [parseTime(s.at), s[key] == null ? null : Number(s[key])]);
    const now = samples.length ? parseTime(samples[samples.length - 1].at) : Date.now();
    // The history holds at most the last 15 minutes; a node up for less shows what it has.
    const xMin = Math.max(now - 15 * 60_000, samples.length ? parseTime(samples[0].at) - 5_000 : now - 60_000);
    const ms = (v) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2).replace(/\.?0+$/, '') || '0');
    const rate = (v) => (v >= 100 ? v.toFixed(0) : v.toFixed(1).replace(/\.0$/, ''));
    const last = samples[samples.length - 1];
    metricsNote.textContent = samples.length
      ? `node ${m.node_id} · a sample every ${m.interval_secs}s · newest ${formatTime(last.at)}`
      : `node ${m.node_id ?? ''} · no samples yet (the first arrives after ${m.interval_secs ?? 5}s)`;
    const emptyText = 'Collecting samples…';
    charts.bids.update({
      xType: 'time', xMin, xMax: now, yMin: 0, yFormat: rate,
      series: [
        { name: 'bids/s', points: points('bids_per_sec'), cls: 'c1', area: true, dots: false },
        { name: 'requests/s', points: points('requests_per_sec'), cls: 'c3', dots: false },
      ],
      empty: emptyText,
    });
    charts.bidP99.update({
      xType: 'time', xMin, xMax: now, yMin: 0, yFormat: ms,
      series: [{ name: 'bid p99 (ms)', points: points('bid_p99_ms'), cls: 'c2', area: true, dots: samples.length < 40 }],
      empty: samples.length ? 'No bids on this node in the window' : emptyText,
    });
    charts.commitP99.update({
      xType: 'time', xMin, xMax: now, yMin: 0, yFormat: ms,
      series: [{ name: 'commit p99 (ms)', points: points('commit_p99_ms'), cls: 'c4', area: true, dots: samples.length < 40 }],
      empty: samples.length ? 'No commits proposed by this node (only the leader proposes)' : emptyText,
    });
    setLatest(bidsCard, last ? `${rate(last.bids_per_sec)} bids/s · ${rate(last.requests_per_sec)} req/s` : '');
    setLatest(bidP99Card, last?.bid_p99_ms != null ? `now ${ms(last.bid_p99_ms)} ms` : '');
    setLatest(commitP99Card, last?.commit_p99_ms != null ? `now ${ms(last.commit_p99_ms)} ms` : '');
  }

  function setLatest(card, text) {
    let el = card.querySelector('.latest');
    if (!el) {
      el = h('p', { class: 'latest num' });
      card.querySelector('.card-head').after(el);
    }
    el.textContent = text;
  }

  async function load() {
    if (stopped || paused) return;
    controller?.abort();
    controller = new AbortController();
    const signal = controller.signal;
    const results = await Promise.allSettled([api.cluster(signal), api.workers(signal), api.metricsHistory(signal), api.ready(signal)]);
    if (stopped || signal.aborted) return;
    const [c, w, m, r] = results;
    const problems = [];
    if (c.status === 'fulfilled') renderCluster(c.value, r.status === 'fulfilled' ? r.value : null);
    else problems.push(`cluster: ${describeError(c.reason, String)}`);
    if (w.status === 'fulfilled') renderWorkers(w.value);
    else problems.push(`workers: ${describeError(w.reason, String)}`);
    if (m.status === 'fulfilled') renderMetrics(m.value);
    else problems.push(`metrics: ${describeError(m.reason, String)}`);
    if (problems.length === 0) lastOk = Date.now();
    mountChildren(notice, problems.length ? h('div', { class: 'notice notice-error', role: 'alert' }, `Could not refresh — ${problems.join('; ')}`) : null);
    tickUpdated();
  }

  function tickUpdated() {
    updated.textContent = lastOk ? `Updated ${formatAgo(Date.now() - lastOk)}` : '';
  }

  // Placeholders so the charts and tables exist before the first answer.
  renderMetrics({ samples: [], interval_secs: 5 });
  mountChildren(members, h('table', { class: 'table', 'data-testid': 'cluster-members' }, h('tbody')));
  mountChildren(workers, h('p', { class: 'muted' }, 'Loading…'));

  const timer = setInterval(() => {
    if (document.visibilityState === 'visible') load();
  }, POLL_MS);
  const tick = setInterval(tickUpdated, 1000);
  const onVisible = () => {
    if (document.visibilityState === 'visible') load();
  };
  document.addEventListener('visibilitychange', onVisible);
  load();

  return () => {
    stopped = true;
    controller?.abort();
    clearInterval(timer);
    clearInterval(tick);
    document.removeEventListener('visibilitychange', onVisible);
    for (const c of Object.values(charts)) c.destroy();
  };
}
