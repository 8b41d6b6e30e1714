// charts.js: hand-written SVG charts of values over time. One function,
// timeChart, draws both the canary weight (a step line with the events
// as markers) and an analysis metric (its measurements as dots against the
// success and failure thresholds).

const NS = 'http://www.w3.org/2000/svg';
const H = 220;
const M = { left: 46, right: 14, top: 14, bottom: 30 };

function svg(tag, attrs, ...children) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) e.setAttribute(k, v);
  for (const c of children) if (c) e.append(c);
  return e;
}

const tip = (text) => svg('title', {}, text);

function niceTicks(lo, hi, n = 4) {
  const span = hi - lo || 1;
  const raw = span / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((f) => f * mag).find((s) => s >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step / 1e6; v += step) out.push(+v.toPrecision(10));
  return out;
}

const hhmmss = (t) => new Date(t).toLocaleTimeString([], { hour12: false });

// timeChart returns an <svg>. opts:
//   label      what the chart shows, for screen readers
//   points     [{t: ms, v: number, phase?: string, label?: string}]
//   step       draw the line as steps (a weight holds until it changes)
//   yMin,yMax  the value axis (else fitted to the points and thresholds)
//   yFormat    renders a value on the axis
//   thresholds [{v, kind: 'success'|'failure', label}]
//   markers    [{t, label}] events drawn as ticks under the plot
//   now        the right end of the time axis when later than the points
//   width      the width of the box the chart goes in, in CSS pixels
export function timeChart(opts) {
  // The drawing is as wide as its box (within limits), so that its text is
  // as large on a phone as on a laptop.
  const W = Math.round(Math.min(640, Math.max(300, opts.width || 640)));
  const pts = (opts.points || []).filter((p) => isFinite(p.t) && isFinite(p.v)).sort((a, b) => a.t - b.t);
  const markers = (opts.markers || []).filter((m) => isFinite(m.t));
  const thresholds = (opts.thresholds || []).filter((th) => isFinite(th.v));
  const fmt = opts.yFormat || ((v) => String(+v.toPrecision(3)));

  const times = pts.map((p) => p.t).concat(markers.map((m) => m.t));
  let t0 = Math.min(...times), t1 = Math.max(...times, opts.now || -Infinity);
  if (!isFinite(t0)) { t1 = opts.now || Date.now(); t0 = t1 - 60e3; }
  if (t1 - t0 < 10e3) t0 = t1 - 10e3;

  const values = pts.map((p) => p.v).concat(thresholds.map((th) => th.v));
  let y0 = opts.yMin ?? Math.min(...values), y1 = opts.yMax ?? Math.max(...values);
  if (!isFinite(y0) || !isFinite(y1)) { y0 = 0; y1 = 1; }
  if (y0 === y1) { y0 -= Math.abs(y0) * 0.1 || 1; y1 += Math.abs(y1) * 0.1 || 1; }
  if (opts.yMin === undefined || opts.yMax === undefined) {
    const pad = (y1 - y0) * 0.08;
    if (opts.yMin === undefined) y0 -= pad;
    if (opts.yMax === undefined) y1 += pad;
  }

  const x = (t) => M.left + ((t - t0) / (t1 - t0)) * (W - M.left - M.right);
  const y = (v) => H - M.bottom - ((v - y0) / (y1 - y0)) * (H - M.top - M.bottom);

  const root = svg('svg', {
    viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': opts.label,
    'data-points': pts.length, 'data-markers': markers.length,
  }, tip(opts.label));

  const grid = svg('g', { class: 'grid' });
  for (const v of niceTicks(y0, y1)) {
    grid.append(svg('line', { x1: M.left, x2: W - M.right, y1: y(v), y2: y(v) }));
    grid.append(svg('text', { x: M.left - 6, y: y(v) + 4, 'text-anchor': 'end' }, document.createTextNode(fmt(v))));
  }
  grid.append(svg('text', { x: M.left, y: H - 8 }, document.createTextNode(hhmmss(t0))));
  grid.append(svg('text', { x: W - M.right, y: H - 8, 'text-anchor': 'end' }, document.createTextNode(hhmmss(t1))));
  root.append(grid);

  for (const th of thresholds) {
    root.append(svg('g', { class: `threshold ${th.kind}` },
      tip(th.label),
      svg('line', { x1: M.left, x2: W - M.right, y1: y(th.v), y2: y(th.v) }),
      svg('text', { x: W - M.right - 4, y: y(th.v) - 4, 'text-anchor': 'end' }, document.createTextNode(th.label))));
  }

  if (pts.length) {
    let d = `M${x(pts[0].t)},${y(pts[0].v)}`;
    for (const p of pts.slice(1)) d += opts.step ? `H${x(p.t)}V${y(p.v)}` : `L${x(p.t)},${y(p.v)}`;
    if (opts.step && opts.now && opts.now > pts[pts.length - 1].t) d += `H${x(t1)}`;
    root.append(svg('path', { class: 'line', d }));
  }
  for (const p of pts) {
    root.append(svg('circle', { class: `pt ${(p.phase || '').toLowerCase()}`, cx: x(p.t), cy: y(p.v), r: 4 },
      tip(`${hhmmss(p.t)}  ${p.label || fmt(p.v)}`)));
  }

  const mk = svg('g', { class: 'markers' });
  for (const m of markers) {
    mk.append(svg('g', { class: 'marker' }, tip(`${hhmmss(m.t)}  ${m.label}`),
      svg('line', { x1: x(m.t), x2: x(m.t), y1: M.top, y2: H - M.bottom }),
      svg('path', { d: `M${x(m.t) - 5},${H - M.bottom + 8}l5,-8l5,8z` })));
  }
  root.append(mk);
  return root;
}

// threshold parses a simple numeric comparison out of an Argo condition
// such as "len(result) > 0 && result[0] >= 0.95": {op: '>=', v: 0.95}, or
// null when there is none to draw.
export function threshold(condition) {
  const m = /result(?:\[0\])?\s*(>=|<=|==|>|<)\s*(-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)/i.exec(condition || '');
  return m ? { op: m[1], v: parseFloat(m[2]) } : null;
}

// measuredValue reads the number out of a measurement's value: "0.98",
// "[0.98]", "[0.98 0.5]" all give 0.98; NaN when there is none.
export function measuredValue(value) {
  const m = /-?\d+(?:\.\d+)?(?:e[-+]?\d+)?/i.exec(value || '');
  return m ? parseFloat(m[0]) : NaN;
}
