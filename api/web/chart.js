// Hand-drawn SVG line charts (no library): price over time on the auction page,
// cumulative totals per round for multi-round auctions, and the operator's metrics.
//
// createChart(container, options) draws into `container` at its current width and
// redraws when it is resized; chart.update(data) redraws with new series.
//
// data = {
//   series: [{ name, points: [[x, y|null], ...], step?: bool, cls?: 'c1'..'c6', dots?: bool }],
//   xType: 'time' | 'number', xMin?, xMax?, yMin?, yMax?,
//   yFormat: (v) => text, xFormat?: (v) => text,
//   markers?: [{ x, label }],   // vertical lines (e.g. "now", the end)
//   empty?: 'text shown when there is nothing to draw',
// }
// A null y breaks the line (a metric with no sample).

import { svg, h } from './format.js';

const PAD = { top: 14, right: 14, bottom: 26, left: 56 };

function niceStep(range, count) {
  const raw = range / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  const nice = norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10;
  return nice * mag;
}

function niceTicks(min, max, count) {
  if (!(max > min)) {
    const pad = Math.abs(max) > 0 ? Math.abs(max) * 0.1 : 1;
    min -= pad;
    max += pad;
  }
  const step = niceStep(max - min, count);
  const lo = Math.floor(min / step) * step;
  const hi = Math.ceil(max / step) * step;
  const ticks = [];
  for (let v = lo; v <= hi + step / 2; v += step) ticks.push(Number(v.toPrecision(12)));
  return { lo, hi, ticks };
}

const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800].map(
  (s) => s * 1000,
);

function timeTicks(min, max, count) {
  const range = Math.max(1, max - min);
  const step = TIME_STEPS.find((s) => range / s <= count) ?? TIME_STEPS[TIME_STEPS.length - 1];
  const offset = new Date().getTimezoneOffset() * 60_000;
  const ticks = [];
  // Align ticks to local wall-clock multiples of the step.
  let t = Math.ceil((min - offset) / step) * step + offset;
  for (; t <= max; t += step) ticks.push(t);
  return { step, ticks };
}

const hmFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const hmsFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const dayFmt = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });

function timeLabel(t, step) {
  const d = new Date(t);
  if (step >= 86_400_000) return dayFmt.format(d);
  if (step >= 60_000) return hmFmt.format(d);
  return hmsFmt.format(d);
}

export function createChart(container, { testid, label, height = 220, compact = false } = {}) {
  const root = h('figure', { class: ['chart', compact && 'chart-compact'] });
  container.appendChild(root);
  let data = null;
  let lastWidth = 0;

  const draw = () => {
    const width = Math.max(240, Math.floor(root.clientWidth || container.clientWidth || 480));
    lastWidth = width;
    root.replaceChildren(render(data, width, height, testid, label));
    if (data?.series?.length > 1) root.appendChild(legend(data.series));
  };

  const ro = typeof ResizeObserver === 'function'
    ? new ResizeObserver(() => {
      const w = Math.floor(root.clientWidth);
      if (w && Math.abs(w - lastWidth) > 4 && data) draw();
    })
    : null;
  ro?.observe(root);

  return {
    el: root,
    update(next) {
      data = next;
      draw();
    },
    destroy() {
      ro?.disconnect();
      root.remove();
    },
  };
}

function legend(series) {
  return h(
    'figcaption',
    { class: 'chart-legend' },
    series.map((s, i) => h('span', { class: ['legend-item', s.cls ?? `c${(i % 6) + 1}`] }, h('span', { class: 'legend-swatch', 'aria-hidden': 'true' }), s.name)),
  );
}

function render(data, width, height, testid, label) {
  const root = svg('svg', {
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    role: 'img',
    'aria-label': data?.label ?? label ?? 'chart',
    'data-testid': testid,
    class: 'chart-svg',
  });
  const series = (data?.series ?? []).map((s) => ({ ...s, points: s.points.filter((p) => p[0] != null) }));
  const all = series.flatMap((s) => s.points.filter((p) => p[1] != null && Number.isFinite(p[1])));
  const pw = width - PAD.left - PAD.right;
  const ph = height - PAD.top - PAD.bottom;

  if (!data || all.length === 0) {
    root.appendChild(svg('rect', { x: PAD.left, y: PAD.top, width: pw, height: ph, class: 'chart-frame' }));
    root.appendChild(
      svg('text', { x: PAD.left + pw / 2, y: PAD.top + ph / 2, 'text-anchor': 'middle', 'dominant-baseline': 'middle', class: 'chart-empty' },
        data?.empty ?? 'No data yet'),
    );
    return root;
  }

  const xs = all.map((p) => p[0]);
  let xMin = data.xMin ?? Math.min(...xs);
  let xMax = data.xMax ?? Math.max(...xs);
  for (const m of data.markers ?? []) {
    if (data.xMax == null) xMax = Math.max(xMax, m.x);
  }
  if (xMax <= xMin) xMax = xMin + (data.xType === 'time' ? 60_000 : 1);

  const ys = all.map((p) => p[1]);
  let yLo = data.yMin ?? Math.min(...ys);
  let yHi = data.yMax ?? Math.max(...ys);
  if (data.yMin == null) yLo = Math.min(yLo, yHi - (yHi - yLo) * 1.15);
  const yt = niceTicks(Math.max(data.yFloor ?? -Infinity, yLo), yHi, Math.max(2, Math.floor(ph / 45)));
  const yMin = yt.lo;
  const yMax = yt.hi;

  const X = (x) => PAD.left + ((x - xMin) / (xMax - xMin)) * pw;
  const Y = (y) => PAD.top + ph - ((y - yMin) / (yMax - yMin || 1)) * ph;

  // Grid and y axis.
  const grid = svg('g', { class: 'chart-grid' });
  for (const t of yt.ticks) {
    if (t < yMin - 1e-9 || t > yMax + 1e-9) continue;
    const y = Y(t);
    grid.appendChild(svg('line', { x1: PAD.left, x2: PAD.left + pw, y1: y, y2: y }));
    grid.appendChild(svg('text', { x: PAD.left - 8, y, 'text-anchor': 'end', 'dominant-baseline': 'middle', class: 'chart-tick' },
      data.yFormat ? data.yFormat(t) : String(t)));
  }
  // X axis.
  const maxXTicks = Math.max(3, Math.floor(pw / 100));
  if (data.xType === 'time') {
    const tt = timeTicks(xMin, xMax, maxXTicks);
    for (const t of tt.ticks) {
      const x = X(t);
      grid.appendChild(svg('line', { x1: x, x2: x, y1: PAD.top, y2: PAD.top + ph, class: 'chart-vgrid' }));
      grid.appendChild(svg('text', { x, y: PAD.top + ph + 17, 'text-anchor': 'middle', class: 'chart-tick' }, timeLabel(t, tt.step)));
    }
  } else {
    const xt = niceTicks(xMin, xMax, maxXTicks);
    const step = Math.max(1, xt.ticks[1] - xt.ticks[0] || 1);
    for (let t = Math.ceil(xMin / step) * step; t <= xMax; t += step) {
      const x = X(t);
      grid.appendChild(svg('text', { x, y: PAD.top + ph + 17, 'text-anchor': 'middle', class: 'chart-tick' },
        data.xFormat ? data.xFormat(t) : String(t)));
    }
  }
  grid.appendChild(svg('line', { x1: PAD.left, x2: PAD.left + pw, y1: PAD.top + ph, y2: PAD.top + ph, class: 'chart-axis' }));
  root.appendChild(grid);

  // Markers.
  for (const m of data.markers ?? []) {
    if (m.x < xMin || m.x > xMax) continue;
    const x = X(m.x);
    root.appendChild(svg('line', { x1: x, x2: x, y1: PAD.top, y2: PAD.top + ph, class: ['chart-marker', m.cls].filter(Boolean).join(' ') }));
    if (m.label) {
      const anchor = x > PAD.left + pw - 40 ? 'end' : 'start';
      root.appendChild(svg('text', { x: x + (anchor === 'end' ? -4 : 4), y: PAD.top + 10, 'text-anchor': anchor, class: 'chart-marker-label' }, m.label));
    }
  }

  // Series.
  series.forEach((s, i) => {
    const cls = s.cls ?? `c${(i % 6) + 1}`;
    const g = svg('g', { class: `chart-series ${cls}` });
    let d = '';
    let area = '';
    let open = false;
    let prev = null;
    let segStart = null;
    const closeArea = () => {
      if (s.area && segStart != null && prev) {
        area += `L${X(prev[0]).toFixed(1)},${(PAD.top + ph).toFixed(1)}L${X(segStart).toFixed(1)},${(PAD.top + ph).toFixed(1)}Z`;
      }
    };
    for (const p of s.points) {
      if (p[1] == null || !Number.isFinite(p[1])) {
        closeArea();
        open = false;
        prev = null;
        segStart = null;
        continue;
      }
      const x = X(p[0]).toFixed(1);
      const y = Y(p[1]).toFixed(1);
      if (!open) {
        d += `M${x},${y}`;
        area += `M${x},${y}`;
        segStart = p[0];
        open = true;
      } else if (s.step) {
        d += `H${x}V${y}`;
        area += `H${x}V${y}`;
      } else {
        d += `L${x},${y}`;
        area += `L${x},${y}`;
      }
      prev = p;
    }
    closeArea();
    if (s.area && area) g.appendChild(svg('path', { d: area, class: 'chart-area' }));
    if (s.line !== false) g.appendChild(svg('path', { d, class: 'chart-line' }));
    const pts = s.points.filter((p) => p[1] != null && Number.isFinite(p[1]));
    const dots = s.dots ?? pts.length <= 60;
    if (!dots && s.line !== false) {
      // A sample between two gaps draws no line: mark it with a small dot.
      s.points.forEach((p, j) => {
        const ok = (q) => q && q[1] != null && Number.isFinite(q[1]);
        if (ok(p) && !ok(s.points[j - 1]) && !ok(s.points[j + 1])) {
          g.appendChild(svg('circle', { cx: X(p[0]).toFixed(1), cy: Y(p[1]).toFixed(1), r: 2.5, class: 'chart-dot' }));
        }
      });
    }
    if (dots) {
      for (const p of s.dots === 'marked' ? pts.filter((q) => q[2]) : pts) {
        const c = svg('circle', { cx: X(p[0]).toFixed(1), cy: Y(p[1]).toFixed(1), r: s.line === false ? 5 : 3.5, class: 'chart-dot' });
        const tip = p[2] ?? `${s.name}: ${data.yFormat ? data.yFormat(p[1]) : p[1]}`;
        c.appendChild(svg('title', null, tip));
        g.appendChild(c);
      }
    }
    root.appendChild(g);
  });
  return root;
}
