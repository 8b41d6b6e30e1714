// experiments.js: every standalone Experiment the caller may see, one row
// each with its templates' pods and its analysis runs, kept current from
// the status-event stream. #/experiments?namespace=NS filters it.
import * as api from './api.js';
import { el, replace, phaseBadge, age } from './ui.js';
import { liveRows } from './rows.js';

export function experimentsPage(main, me, params) {
  const namespace = params.get('namespace') || '';
  const tbody = el('tbody');
  const empty = el('p', { class: 'muted empty', hidden: true }, 'No experiments. Apply one with sluice apply -f experiment.yaml.');
  const error = el('p', { class: 'error', role: 'alert', hidden: true });
  const count = el('span', { class: 'muted', 'aria-live': 'polite' });

  replace(main,
    el('div', { class: 'page-head' }, el('h1', {}, 'Experiments'), count),
    error,
    el('table', { class: 'rollouts experiments' },
      el('thead', {}, el('tr', {},
        ['Experiment', 'Phase', 'Templates (available / replicas)', 'Analysis runs', 'Message', 'Age'].map((h) => el('th', { scope: 'col' }, h)))),
      tbody),
    empty);

  const key = (s) => `${s.namespace}/${s.name}`;

  function rowFor(s) {
    const templates = (s.experiment && s.experiment.templates) || [];
    const runs = s.runs || [];
    return el('tr', { 'data-experiment': key(s), 'data-phase': s.phase },
      el('td', { 'data-label': 'Experiment' }, el('span', { class: 'name' }, s.name), el('span', { class: 'ns' }, s.namespace)),
      el('td', { 'data-label': 'Phase' }, phaseBadge(s)),
      el('td', { 'data-label': 'Templates', class: 'templates' }, templates.length
        ? el('ul', { class: 'plain' }, templates.map((t) => el('li', { 'data-template': t.name, title: t.replicaSet },
          el('span', { class: 'tname' }, t.name), ' ', el('span', { class: 'num' }, `${t.available ?? 0}/${t.replicas ?? 0}`))))
        : el('span', { class: 'muted' }, '–')),
      el('td', { 'data-label': 'Runs', class: 'runs' }, runs.length
        ? el('ul', { class: 'plain' }, runs.map((r) => el('li', { 'data-run': r.name, 'data-phase': r.phase, title: r.message || '' },
          el('span', { class: `badge analysis-${(r.phase || 'pending').toLowerCase()}` }, r.phase || 'Pending'), ' ', r.name)))
        : el('span', { class: 'muted' }, 'none')),
      el('td', { 'data-label': 'Message', class: 'message' }, s.message || null),
      el('td', { 'data-label': 'Age', class: 'age', 'data-since': s.createdAt || s.updatedAt || '' }, age(s.createdAt || s.updatedAt)));
  }

  return liveRows({
    tbody, empty, error, count, noun: 'experiment', kind: 'Experiment', namespace,
    fetch: () => api.listExperiments({ namespace }), rowFor,
  });
}
