// SVG charts drawn here (no library): a line chart of tokens per day and a weekday × hour
// heatmap. Each comes with a caption and its numbers in a table for screen readers; every
// point carries its values as data attributes and a <title> tooltip.

import { h, s } from './dom.js';

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];

function niceMax(n) {
  if (n <= 4) return 4;
  const p = 10 ** Math.floor(Math.log10(n));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= n) return m * p;
  return 10 * p;
}

/** Line chart of [{date, count}], oldest first. */
export function lineChart(points, title) {
  const W = 720, H = 240, L = 48, R = 12, T = 14, B = 34;
  const max = niceMax(Math.max(0, ...points.map((p) => p.count)));
  const x = (i) => L + (points.length <= 1 ? 0 : (i * (W - L - R)) / (points.length - 1));
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const grid = [0, 0.25, 0.5, 0.75, 1].map((f) => {
    const v = max * f;
    return s('g', { class: 'grid' },
      s('line', { x1: L, x2: W - R, y1: y(v), y2: y(v) }),
      s('text', { x: L - 6, y: y(v) + 4, 'text-anchor': 'end' }, Number.isInteger(v) ? v : v.toFixed(1)));
  });
  const step = Math.max(1, Math.ceil(points.length / 8));
  const last = points.length - 1;
  const labels = points.map((p, i) => ((i % step === 0 && last - i >= step / 2) || i === last
    ? s('text', { class: 'axis', x: x(i), y: H - 12, 'text-anchor': 'middle' }, p.date.slice(5)) : null));
  const line = s('polyline', { class: 'line', points: points.map((p, i) => `${x(i)},${y(p.count)}`).join(' ') });
  const dots = points.map((p, i) => s('circle', {
    class: 'dot', cx: x(i), cy: y(p.count), r: 3.5, 'data-date': p.date, 'data-count': p.count,
  }, s('title', {}, `${p.date}: ${p.count} tokens`)));
  const total = points.reduce((a, p) => a + p.count, 0);
  const svg = s('svg', {
    class: 'chart line-chart', viewBox: `0 0 ${W} ${H}`, role: 'img',
    'aria-label': `${title}: ${total} in ${points.length} days`, 'data-total': total,
  }, grid, labels, line, dots);
  return h('figure', { class: 'chart-box' },
    h('figcaption', {}, `${title} — ${total} in ${points.length} days`),
    svg,
    h('details', {}, h('summary', {}, 'Numbers'),
      h('table', { class: 'compact' },
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Day'), h('th', { scope: 'col' }, 'Tokens'))),
        h('tbody', {}, points.map((p) => h('tr', {}, h('td', {}, p.date), h('td', {}, p.count)))))));
}

/** Heatmap of [{dayOfWeek (0 = Sunday), hour, count}] (UTC). */
export function heatmap(cells, title) {
  const grid = Array.from({ length: 7 }, () => new Array(24).fill(0));
  for (const c of cells) if (c.dayOfWeek < 7 && c.hour < 24) grid[c.dayOfWeek][c.hour] += c.count;
  const max = Math.max(0, ...grid.flat());
  const C = 24, L = 40, T = 18;
  const bucket = (v) => (v === 0 ? 0 : Math.min(5, 1 + Math.floor((4 * v) / Math.max(1, max))));
  const rects = [];
  grid.forEach((row, d) => row.forEach((v, hr) => rects.push(s('rect', {
    class: `cell h${bucket(v)}`, x: L + hr * C, y: T + d * C, width: C - 2, height: C - 2, rx: 3,
    'data-day': d, 'data-hour': hr, 'data-count': v,
  }, s('title', {}, `${DAYS[d]} ${String(hr).padStart(2, '0')}:00 UTC: ${v}`)))));
  const dayLabels = DAYS.map((d, i) => s('text', { class: 'axis', x: L - 6, y: T + i * C + 15, 'text-anchor': 'end' }, d));
  const hourLabels = [0, 3, 6, 9, 12, 15, 18, 21].map((hr) => s('text', { class: 'axis', x: L + hr * C + 11, y: 12, 'text-anchor': 'middle' }, hr));
  const total = grid.flat().reduce((a, v) => a + v, 0);
  return h('figure', { class: 'chart-box' },
    h('figcaption', {}, `${title} — ${total} events, busiest hour ${max}`),
    s('svg', {
      class: 'chart heatmap', viewBox: `0 0 ${L + 24 * C} ${T + 7 * C}`, role: 'img',
      'aria-label': `${title}: ${total} events`, 'data-total': total,
    }, hourLabels, dayLabels, rects),
    h('p', { class: 'legend' }, 'Fewer ', [0, 1, 2, 3, 4, 5].map((b) => h('span', { class: `swatch h${b}`, 'aria-hidden': 'true' })), ' more (UTC)'));
}
