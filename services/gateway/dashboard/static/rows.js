// rows.js: the body of a list page's table, one row per rollout or per
// standalone Experiment, loaded from the API and kept current from the
// status-event stream.
import * as api from './api.js';
import { age, debounce } from './ui.js';

// liveRows fills tbody with rowFor(item) for every item fetch() resolves
// with that matches(item), sorted by namespace/name, and keeps the rows
// current: each status event of kind ('' for a rollout, 'Experiment')
// replaces its item's row from its snapshot, a new item reloads the list,
// a deleted one loses its row; rejections and refusals change nothing.
// empty is shown while there is no row, count says how many nouns there
// are, error why the list cannot be read. It returns a function that
// stops following.
export function liveRows({ tbody, empty, error, count, noun, kind, namespace, fetch, rowFor, matches = () => true }) {
  const rows = new Map(); // "ns/name" -> {summary, tr}
  const key = (s) => `${s.namespace}/${s.name}`;
  const types = kind === 'Experiment' ? 'io.sluice.experiment.' : 'io.sluice.rollout.';

  function put(s) {
    const k = key(s);
    const old = rows.get(k);
    if (!matches(s)) {
      if (old) { old.tr.remove(); rows.delete(k); }
    } else {
      const tr = rowFor(s);
      if (old) old.tr.replaceWith(tr);
      else tbody.append(tr);
      rows.set(k, { summary: s, tr });
    }
  }

  function summarize() {
    empty.hidden = rows.size > 0;
    count.textContent = `${rows.size} ${noun}${rows.size === 1 ? '' : 's'}`;
  }

  async function load() {
    try {
      const items = await fetch();
      items.sort((a, b) => key(a).localeCompare(key(b)));
      tbody.replaceChildren();
      rows.clear();
      for (const s of items) put(s);
      summarize();
      error.hidden = true;
    } catch (err) {
      error.textContent = `Cannot list ${noun}s: ${err.message}`;
      error.hidden = false;
    }
  }
  const reload = debounce(load, 300);

  const stop = api.stream({ namespace }, (ce) => {
    const st = ce.data && ce.data.status;
    if (!st || !st.name || (st.kind || '') !== kind) return;
    const k = key(st);
    if (ce.type === types + 'deleted.v1') {
      const old = rows.get(k);
      if (old) { old.tr.remove(); rows.delete(k); summarize(); }
      return;
    }
    if (ce.type === types + 'command.refused.v1' || ce.type === types + 'rejected.v1') return;
    const old = rows.get(k);
    if (!old) { reload(); return; }
    put({ ...st, createdAt: old.summary.createdAt });
    summarize();
  });

  const tick = setInterval(() => {
    for (const td of tbody.querySelectorAll('td.age')) td.textContent = age(td.dataset.since);
  }, 5000);

  load();
  return () => { stop(); clearInterval(tick); };
}
