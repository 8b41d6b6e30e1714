// rollout.js: one rollout's page. It loads the rollout and its history,
// then follows the rollout's status events: each one updates the page at
// once (phase, weights, a measurement, the timeline) and asks for a fresh
// copy from the API shortly after, for what an event does not carry
// (pods, revisions).
import * as api from './api.js';
import { el, replace, phaseBadge, age, duration, clock, shortType, stepProgress, weights, debounce } from './ui.js';
import { timeChart, threshold, measuredValue } from './charts.js';

const active = (s) => (s.phase === 'Progressing' || s.phase === 'Paused') && !s.aborted;

// Each action: the verb the API takes, who may use it, and when it means
// something (else the button is disabled, saying why).
const actions = [
  { verb: 'promote', label: 'Promote', need: 'operator', when: active, why: 'nothing to promote: the rollout is not progressing' },
  { verb: 'promote', full: true, label: 'Promote full', need: 'operator', when: active, why: 'nothing to promote: the rollout is not progressing' },
  { verb: 'pause', label: 'Pause', need: 'operator', when: (s) => s.phase === 'Progressing' && !s.aborted, why: 'only a progressing rollout can be paused' },
  // A pause step or an inconclusive analysis (a pause condition) is lifted
  // by Promote; Resume lifts only a Pause (the orchestrator refuses it
  // otherwise).
  { verb: 'resume', label: 'Resume', need: 'operator', when: (s) => s.phase === 'Paused' && !s.aborted && !(s.pauseConditions || []).length, why: 'Resume lifts a Pause; a pause step or an inconclusive analysis is lifted by Promote' },
  { verb: 'abort', label: 'Abort', need: 'operator', when: active, why: 'nothing to abort: the rollout is not progressing', danger: true },
  { verb: 'retry', label: 'Retry', need: 'operator', when: (s) => !!s.aborted, why: 'only an aborted rollout can be retried' },
  { verb: 'undo', label: 'Undo', need: 'operator', when: (s) => s.revision > 1, why: 'there is no earlier revision' },
  { verb: 'restart', label: 'Restart', need: 'operator', when: (s) => !s.aborted && s.phase !== 'Degraded', why: 'restart a rollout that is not aborted or degraded' },
  { verb: 'delete', label: 'Delete', need: 'admin', when: () => true, danger: true },
];

function section(id, title, ...children) {
  return el('section', { id, 'aria-labelledby': `${id}-h` }, el('h2', { id: `${id}-h` }, title), ...children);
}

export function rolloutPage(main, me, ns, name) {
  let detail = null;
  let history = [];
  let live = []; // {t, v, label} from events newer than the API's weights
  let busy = false;

  const head = el('div', { class: 'page-head' });
  const facts = el('dl', { class: 'facts' });
  const bar = el('div', { class: 'actions', role: 'group', 'aria-label': 'Actions' });
  const statusLine = el('p', { id: 'command-status', class: 'status-line', role: 'status', 'aria-live': 'polite' });
  const steps = el('ol', { class: 'steps' });
  const weightBox = el('div', { class: 'chart-box', id: 'weight-chart' });
  const analysisBox = el('div', { id: 'analysis-runs' });
  const revisionsBox = el('div', { id: 'revision-list' });
  const timeline = el('ol', { class: 'timeline', reversed: true });
  const error = el('p', { class: 'error', role: 'alert', hidden: true });

  const mayAct = actions.filter((a) => api.canDo(me, ns, a.need));
  const buttons = mayAct.map((a) => {
    const b = el('button', { type: 'button', class: a.danger ? 'danger' : '', 'data-action': a.full ? 'promote-full' : a.verb }, a.label);
    b.addEventListener('click', () => confirmAndSend(a, b));
    return b;
  });
  bar.append(...buttons);

  replace(main,
    el('p', { class: 'crumbs' }, el('a', { href: '#/' }, '← Rollouts'), ` / ${ns}`),
    head, error, facts,
    mayAct.length ? el('div', { class: 'action-bar' }, bar, statusLine) : null,
    el('div', { class: 'grid2' },
      section('steps', 'Steps', steps),
      section('weights', 'Canary weight', weightBox)),
    section('analysis', 'Analysis', analysisBox),
    section('revisions', 'Revisions', revisionsBox),
    section('history', 'Timeline', timeline));

  function render() {
    const s = detail.status;
    replace(head, el('h1', {}, s.name), phaseBadge(s), el('span', { class: 'muted' }, s.strategy === 'blueGreen' ? 'blue/green' : s.strategy || ''));
    replace(facts,
      fact('Namespace', s.namespace),
      fact('Message', s.message || '—'),
      fact('Steps', stepProgress(s)),
      fact('Canary / stable', weights(s)),
      fact('Revision', `#${s.revision}` + (s.stableRevision ? ` (stable #${s.stableRevision})` : '')),
      fact('Replicas', `${s.replicas?.ready ?? 0} ready of ${s.replicas?.desired ?? 0}`),
      s.analysis ? fact('Analysis', `${s.analysis.name}: ${s.analysis.phase}`) : null,
      fact('Updated', `${age(s.updatedAt)} ago`));
    for (const [i, b] of buttons.entries()) {
      const ok = mayAct[i].when(s);
      b.disabled = busy || !ok;
      b.title = ok ? '' : mayAct[i].why || '';
    }
    renderSteps(s);
    renderWeights();
    renderAnalysis();
    renderRevisions();
    renderTimeline();
  }

  function fact(k, v) {
    return el('div', {}, el('dt', {}, k), el('dd', {}, v));
  }

  function renderSteps(s) {
    const list = detail.steps || [];
    if (!list.length) { replace(steps, el('li', { class: 'muted' }, 'No steps: a full rollout.')); return; }
    const healthy = s.phase === 'Healthy' && !s.aborted;
    replace(steps, list.map((st) => {
      const cur = !healthy && st.index === s.stepIndex;
      const done = healthy || (s.stepIndex ?? -1) > st.index;
      const li = el('li', { class: cur ? 'current' : done ? 'done' : '', 'aria-current': cur ? 'step' : null },
        el('span', { class: 'step-action' }, st.detail || st.action));
      if (cur && st.action === 'pause') {
        const pc = (s.pauseConditions || []).find((p) => p.reason === 'CanaryPauseStep');
        if (pc && st.durationSeconds) {
          li.append(el('span', { class: 'countdown', 'data-deadline': new Date(pc.startTime).getTime() + st.durationSeconds * 1000 }));
        }
      }
      return li;
    }));
    tickCountdowns();
  }

  function tickCountdowns() {
    for (const c of steps.querySelectorAll('.countdown[data-deadline]')) {
      const left = (Number(c.dataset.deadline) - Date.now()) / 1000;
      c.textContent = left > 0 ? `${duration(left)} left` : 'resuming…';
    }
  }

  function renderWeights() {
    const fromAPI = (detail.weights || []).map((w) => ({ t: Date.parse(w.time), v: w.canaryWeight, event: w.event, label: `${w.canaryWeight}% · ${shortType(w.event)}` }));
    const last = fromAPI.length ? fromAPI[fromAPI.length - 1].t : -Infinity;
    let pts = fromAPI.concat(live.filter((p) => p.t > last));
    // Chart the update in progress (or the last one): from its
    // rollout.accepted on.
    const start = pts.map((p) => p.event).lastIndexOf('io.sluice.rollout.accepted.v1');
    if (start > 0) pts = pts.slice(start);
    replace(weightBox, timeChart({
      label: `Canary weight of ${name} over time, this update`, points: pts, step: true, yMin: 0, yMax: 100,
      yFormat: (v) => `${v}%`, markers: pts.map((p) => ({ t: p.t, label: p.label })), now: Date.now(), width: weightBox.clientWidth,
    }));
  }

  function renderAnalysis() {
    const runs = detail.analysisRuns || [];
    if (!runs.length) { replace(analysisBox, el('p', { class: 'muted' }, 'No analysis has run for this rollout.')); return; }
    replace(analysisBox, runs.slice().reverse().map((run) => el('article', { class: 'run', 'data-run': run.name },
      el('h3', {}, run.name, ' ', el('span', { class: `badge analysis-${(run.phase || '').toLowerCase()}` }, run.phase || 'Pending'),
        run.purpose ? el('span', { class: 'muted' }, ` ${run.purpose} analysis`) : null),
      run.message ? el('p', { class: 'muted' }, run.message) : null,
      el('div', { class: 'metrics' }, (run.metrics || []).map((m) => metricView(run, m))))));
  }

  function metricView(run, m) {
    const ths = [];
    const ok = threshold(m.successCondition);
    const bad = threshold(m.failureCondition);
    if (ok) ths.push({ v: ok.v, kind: 'success', label: `success ${ok.op} ${ok.v}` });
    if (bad && !(ok && bad.v === ok.v)) ths.push({ v: bad.v, kind: 'failure', label: `failure ${bad.op} ${bad.v}` });
    else if (bad) ths[0].label += ` · failure ${bad.op} ${bad.v}`;
    const ms = m.measurements || [];
    const pts = ms.map((x) => ({ t: Date.parse(x.finishedAt || x.startedAt), v: measuredValue(x.value), phase: x.phase, label: `${x.value ?? ''} ${x.phase}` }));
    const lastM = ms[ms.length - 1];
    return el('div', { class: 'metric', 'data-metric': m.name },
      el('h4', {}, m.name),
      el('p', { class: 'conditions' },
        m.successCondition ? el('span', {}, 'success: ', el('code', {}, m.successCondition)) : null,
        m.failureCondition ? el('span', {}, 'failure: ', el('code', {}, m.failureCondition)) : null),
      el('div', { class: 'chart-box' }, timeChart({ label: `${m.name} measurements of ${run.name}`, points: pts, thresholds: ths, width: analysisBox.clientWidth - 40 })),
      el('p', { class: 'muted' }, `${ms.length} measurement${ms.length === 1 ? '' : 's'}`,
        lastM ? `; last ${lastM.value ?? '—'} (${lastM.phase}) at ${clock(lastM.finishedAt || lastM.startedAt)}` : '',
        lastM?.message ? ` — ${lastM.message}` : ''));
  }

  function renderRevisions() {
    const revs = detail.revisions || [];
    if (!revs.length) { replace(revisionsBox, el('p', { class: 'muted' }, 'No revisions running.')); return; }
    replace(revisionsBox, revs.map((r) => el('article', { class: `revision role-${r.role}` },
      el('h3', {}, `Revision #${r.revision} `, el('span', { class: `badge role-badge role-${r.role}` }, r.role),
        r.podHash ? el('code', { class: 'muted' }, ` ${r.podHash}`) : null),
      el('p', { class: 'muted' }, [(r.images || []).join(', '), r.replicas !== undefined ? `${r.ready ?? 0}/${r.replicas} ready` : ''].filter(Boolean).join(' · ')),
      (r.pods || []).length
        ? el('table', { class: 'pods' },
          el('thead', {}, el('tr', {}, ['Pod', 'Image', 'Ready', 'Restarts', 'Age'].map((h) => el('th', { scope: 'col' }, h)))),
          el('tbody', {}, r.pods.map((p) => el('tr', {},
            el('td', { 'data-label': 'Pod' }, p.name),
            el('td', { 'data-label': 'Image' }, p.image),
            el('td', { 'data-label': 'Ready' }, el('span', { class: p.ready ? 'ok' : 'warn' }, p.ready ? 'ready' : 'not ready')),
            el('td', { 'data-label': 'Restarts' }, String(p.restarts ?? 0)),
            el('td', { 'data-label': 'Age' }, p.startedAt ? age(p.startedAt) : '')))))
        : el('p', { class: 'muted' }, 'No pods.'))));
  }

  function renderTimeline() {
    const byId = new Map(history.map((h) => [h.event.id, h.event]));
    const items = history.slice(-200).reverse();
    replace(timeline, items.map((h) => {
      const ce = h.event;
      const d = ce.data || {};
      const cause = ce.causationid && ce.causationid !== ce.id ? byId.get(ce.causationid) : null;
      const isCommand = !(ce.type || '').match(/\.(accepted|rejected|started|completed|paused|resumed|aborted|degraded|restarted|deleted|refused|measured)\.v\d+$/);
      const what = d.step ? (d.step.detail || d.step.action)
        : d.measurement ? `${d.measurement.metric} = ${d.measurement.value ?? '—'} (${d.measurement.phase})`
          : d.command ? `${shortType(d.command.type)} refused: ${d.command.code} — ${d.command.reason}`
            : d.reason || (d.errors || []).join('; ') || '';
      return el('li', { class: isCommand ? 'cmd' : '', 'data-type': ce.type },
        el('time', { datetime: ce.time }, clock(ce.time)),
        el('span', { class: 'type' }, shortType(ce.type)),
        ce.actor ? el('span', { class: 'actor' }, ce.actor) : null,
        what ? el('span', { class: 'what' }, what) : null,
        cause ? el('span', { class: 'cause' }, `← ${shortType(cause.type)}${cause.actor ? ' by ' + cause.actor : ''}`)
          : ce.causationid && ce.causationid !== ce.id ? el('span', { class: 'cause', title: ce.causationid }, `← ${ce.causationid.slice(0, 8)}`) : null);
    }));
  }

  async function load() {
    try {
      const [d, h] = await Promise.all([api.getRollout(ns, name), api.getHistory(ns, name)]);
      d.analysisRuns = mergeRuns(detail?.analysisRuns || [], d.analysisRuns || []);
      detail = d;
      history = h;
      const ws = detail.weights || [];
      const last = ws.length ? Date.parse(ws[ws.length - 1].time) : -Infinity;
      live = live.filter((p) => p.t > last);
      error.hidden = true;
      render();
    } catch (err) {
      error.textContent = err.status === 404 ? `No rollout ${ns}/${name}.` : `Cannot load ${ns}/${name}: ${err.message}`;
      error.hidden = false;
    }
  }
  const reload = debounce(load, 400);

  function onEvent(ce, seq) {
    reload();
    if (!detail) return;
    const d = ce.data || {};
    if (!history.some((h) => h.event.id === ce.id)) history.push({ seq: Number(seq) || 0, event: ce });
    if (d.status && d.status.name === name && ce.type !== 'io.sluice.rollout.command.refused.v1') {
      detail.status = d.status;
      live.push({ t: Date.parse(ce.time) || Date.now(), v: d.status.canaryWeight, event: ce.type, label: `${d.status.canaryWeight}% · ${shortType(ce.type)}` });
    }
    if (d.measurement) addMeasurement(d.analysis, d.measurement);
    render();
  }

  // mergeRuns keeps what this page has seen: the API answers with the
  // runs it still holds, and a measurement that came live may be newer
  // than the API's copy.
  function mergeRuns(seen, fresh) {
    const out = fresh.map((run) => ({ ...run, metrics: (run.metrics || []).map((m) => ({ ...m, measurements: [...(m.measurements || [])] })) }));
    for (const old of seen) {
      let run = out.find((r) => r.name === old.name);
      if (!run) { out.push(old); continue; }
      for (const om of old.metrics || []) {
        const m = run.metrics.find((x) => x.name === om.name);
        if (!m) { run.metrics.push(om); continue; }
        for (const x of om.measurements || []) {
          if (!m.measurements.some((y) => y.startedAt === x.startedAt && y.value === x.value)) m.measurements.push(x);
        }
        m.measurements.sort((a, b) => Date.parse(a.startedAt) - Date.parse(b.startedAt));
      }
    }
    return out;
  }

  function addMeasurement(summary, m) {
    const runs = (detail.analysisRuns ||= []);
    const runName = summary?.name || '';
    let run = runs.find((r) => r.name === runName);
    if (!run) { run = { name: runName, phase: summary?.phase, metrics: [] }; runs.push(run); }
    if (summary?.phase) run.phase = summary.phase;
    let metric = run.metrics.find((x) => x.name === m.metric);
    if (!metric) { metric = { name: m.metric, measurements: [] }; run.metrics.push(metric); }
    const list = (metric.measurements ||= []);
    if (!list.some((x) => x.startedAt === m.startedAt && x.value === m.value)) list.push(m);
  }

  const dialog = document.getElementById('confirm');

  function confirmAndSend(a, button) {
    const extra = document.getElementById('confirm-extra');
    replace(document.getElementById('confirm-title'), `${a.label} ${ns}/${name}?`);
    const s = detail.status;
    const text = {
      promote: 'Go to the next step, skipping the current pause or analysis.',
      'promote-full': 'Skip every remaining step, analysis and pause: the new revision takes all traffic.',
      abort: 'Send all traffic back to the stable revision and stop.',
      retry: 'Start the aborted update again from its first step.',
      pause: 'Hold the rollout at its current step until resumed.',
      resume: 'Carry on from the current step.',
      undo: 'Roll back to an earlier revision (the one before the current, unless you name one).',
      restart: 'Restart every pod of the rollout, one at a time.',
      delete: 'Delete the rollout and every pod it runs. This cannot be undone.',
    }[a.full ? 'promote-full' : a.verb];
    replace(document.getElementById('confirm-text'), text);
    replace(extra);
    let revInput = null;
    if (a.verb === 'undo') {
      revInput = el('input', { id: 'undo-revision', type: 'number', min: 1, max: Math.max(1, s.revision - 1), placeholder: `${s.revision - 1}` });
      extra.append(el('label', { for: 'undo-revision' }, 'To revision '), revInput);
    }
    const ok = document.getElementById('confirm-ok');
    ok.textContent = a.label;
    ok.className = a.danger ? 'danger' : '';
    dialog.returnValue = '';
    statusLine.textContent = '';
    statusLine.dataset.outcome = '';
    dialog.addEventListener('close', async () => {
      button.focus();
      if (dialog.returnValue !== 'ok') return;
      let body;
      if (a.full) body = { full: true };
      if (revInput && revInput.value) body = { toRevision: Number(revInput.value) };
      await send(a, body);
    }, { once: true });
    dialog.showModal();
    (revInput || ok).focus();
  }

  async function send(a, body) {
    busy = true;
    render();
    statusLine.dataset.outcome = 'pending';
    statusLine.className = 'status-line';
    statusLine.textContent = `Sending ${a.label.toLowerCase()}…`;
    let r;
    try {
      r = await api.command(ns, name, a.verb, body);
    } catch (err) {
      r = { outcome: 'error', reason: err.message };
    }
    busy = false;
    statusLine.dataset.outcome = r.outcome;
    statusLine.className = `status-line ${r.outcome}`;
    statusLine.textContent = r.outcome === 'done' ? `${a.label}: done (${shortType(r.type)}).`
      : r.outcome === 'refused' ? `${a.label} refused: ${r.code || ''} — ${r.reason || r.error || ''}`
        : r.outcome === 'unanswered' ? `${a.label}: sent, but no answer came in time; watch the timeline.`
          : `${a.label} failed: ${r.reason || r.error || 'unknown error'}`;
    if (r.status && r.outcome === 'done' && r.status.name) detail.status = r.status;
    render();
    if (a.verb === 'delete' && r.outcome === 'done') location.hash = '#/';
    else reload();
  }

  const stop = api.stream({ namespace: ns, rollout: name }, onEvent);
  const tick = setInterval(tickCountdowns, 1000);
  load();
  return () => { stop(); clearInterval(tick); if (dialog.open) dialog.close(); };
}
