// list.js: every rollout the caller may see, one row each, kept current
// from the status-event stream. The namespace and phase filters live in
// the URL (#/?namespace=NS&phase=P) so a filtered list can be shared.
import * as api from './api.js';
import { el, replace, phaseBadge, age, stepProgress, weights } from './ui.js';
import { liveRows } from './rows.js';

const phases = ['Progressing', 'Paused', 'Healthy', 'Degraded'];

export function listPage(main, me, params) {
  const filter = { namespace: params.get('namespace') || '', phase: params.get('phase') || '' };
  const tbody = el('tbody');
  const empty = el('p', { class: 'muted empty', hidden: true }, 'No rollouts yet. Apply one with sluice apply -f rollout.yaml.');
  const error = el('p', { class: 'error', role: 'alert', hidden: true });
  const count = el('span', { class: 'muted', 'aria-live': 'polite' });

  const nsInput = el('input', { id: 'f-namespace', name: 'namespace', value: filter.namespace, placeholder: 'all', autocomplete: 'off', spellcheck: 'false' });
  const phaseSelect = el('select', { id: 'f-phase', name: 'phase' },
    el('option', { value: '' }, 'any'),
    phases.map((p) => el('option', { value: p, selected: p === filter.phase }, p)));
  const applyFilter = () => {
    const q = new URLSearchParams();
    if (nsInput.value.trim()) q.set('namespace', nsInput.value.trim());
    if (phaseSelect.value) q.set('phase', phaseSelect.value);
    const qs = q.toString();
    location.hash = '#/' + (qs ? '?' + qs : '');
  };
  phaseSelect.addEventListener('change', applyFilter);
  const form = el('form', { class: 'filters', role: 'search', onsubmit: (e) => { e.preventDefault(); applyFilter(); } },
    el('label', { for: 'f-namespace' }, 'Namespace'), nsInput,
    el('label', { for: 'f-phase' }, 'Phase'), phaseSelect,
    el('button', { type: 'submit', class: 'ghost' }, 'Filter'));

  replace(main,
    el('div', { class: 'page-head' }, el('h1', {}, 'Rollouts'), count),
    form, error,
    el('table', { class: 'rollouts' },
      el('thead', {}, el('tr', {},
        ['Rollout', 'Phase', 'Steps', 'Canary / stable', 'Revision', 'Message', 'Age'].map((h) => el('th', { scope: 'col' }, h)))),
      tbody),
    empty);

  const key = (s) => `${s.namespace}/${s.name}`;

  function rowFor(s) {
    const href = `#/ns/${encodeURIComponent(s.namespace)}/${encodeURIComponent(s.name)}`;
    return el('tr', { 'data-rollout': key(s), 'data-phase': s.phase },
      el('td', { 'data-label': 'Rollout' }, el('a', { href, class: 'name' }, s.name), el('span', { class: 'ns' }, s.namespace)),
      el('td', { 'data-label': 'Phase' }, phaseBadge(s)),
      el('td', { 'data-label': 'Steps' }, stepProgress(s)),
      el('td', { 'data-label': 'Weights' }, weights(s)),
      el('td', { 'data-label': 'Revision' }, s.revision ? `#${s.revision}` : ''),
      el('td', { 'data-label': 'Message', class: 'message' }, s.message || null),
      el('td', { 'data-label': 'Age', class: 'age', 'data-since': s.createdAt || s.updatedAt || '' }, age(s.createdAt || s.updatedAt)));
  }

  function matches(s) {
    return (!filter.namespace || s.namespace === filter.namespace) && (!filter.phase || s.phase === filter.phase);
  }

  return liveRows({
    tbody, empty, error, count, noun: 'rollout', kind: '', namespace: filter.namespace,
    fetch: () => api.listRollouts(filter), rowFor, matches,
  });
}
