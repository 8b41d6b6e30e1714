// ui.js: small DOM helpers the pages share.

// el builds an element: el('a', {href: '#/', class: 'x'}, 'text', child).
// Attributes starting with "on" are listeners (never inline handlers: the
// CSP forbids them).
export function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else e.setAttribute(k, v === true ? '' : v);
  }
  append(e, children);
  return e;
}

function append(e, children) {
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : String(c));
  }
}

export function replace(e, ...children) {
  e.replaceChildren();
  append(e, children);
}

export function phaseBadge(status) {
  const label = status.aborted ? 'Aborted' : (status.phase || 'Unknown');
  return el('span', { class: `badge phase-${label.toLowerCase()}` }, label);
}

// age renders how long ago t was: 45s, 3m, 2h, 4d.
export function age(t, now = Date.now()) {
  const ms = now - new Date(t).getTime();
  if (!isFinite(ms)) return '';
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

export function duration(seconds) {
  seconds = Math.max(0, Math.ceil(seconds));
  const m = Math.floor(seconds / 60);
  const s = seconds % 60;
  return m ? `${m}m ${String(s).padStart(2, '0')}s` : `${s}s`;
}

export function clock(t) {
  const d = new Date(t);
  return isFinite(d) ? d.toLocaleTimeString([], { hour12: false }) : '';
}

// shortType turns io.sluice.rollout.step.started.v1 into step.started.
export function shortType(t) {
  return (t || '').replace(/^io\.sluice\.(rollout\.)?/, '').replace(/\.v\d+$/, '');
}

// stepProgress is the "i/n" bar of a snapshot's canary steps.
export function stepProgress(s) {
  const n = s.stepCount || 0;
  if (!n) return el('span', { class: 'muted' }, s.strategy === 'blueGreen' ? 'blue/green' : '–');
  const done = s.phase === 'Healthy' && !s.aborted ? n : Math.min(s.stepIndex ?? 0, n);
  const bar = el('span', { class: 'bar', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': n, 'aria-valuenow': done, 'aria-label': 'steps done' });
  const fill = el('span', { class: 'fill' });
  fill.style.width = `${(100 * done) / n}%`;
  bar.append(fill);
  return el('span', { class: 'progress' }, bar, el('span', { class: 'num' }, `${done}/${n}`));
}

export function weights(s) {
  return el('span', { class: 'weights', title: 'canary / stable traffic' },
    el('span', { class: 'w-canary' }, `${s.canaryWeight ?? 0}%`), ' / ',
    el('span', { class: 'w-stable' }, `${s.stableWeight ?? 0}%`));
}

// debounce calls fn once, wait ms after the last of a burst of calls.
export function debounce(fn, wait) {
  let t;
  return (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), wait);
  };
}
