// api.js: the gateway's /api/v1 as the dashboard uses it. Every call goes
// through request(), which sends the CSRF header, sends a signed-out caller
// to the sign-in page and turns an error answer into an Error carrying the
// server's message.

export const statusTypes = [
  'accepted', 'rejected', 'step.started', 'step.completed', 'paused', 'resumed',
  'aborted', 'completed', 'degraded', 'restarted', 'deleted', 'command.refused',
].map((t) => `io.sluice.rollout.${t}.v1`).concat(
  ['accepted', 'rejected', 'running', 'completed', 'terminated', 'deleted', 'command.refused']
    .map((t) => `io.sluice.experiment.${t}.v1`),
  'io.sluice.analysis.measured.v1', 'io.sluice.analysis.completed.v1');

export function cookie(name) {
  for (const part of document.cookie.split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return decodeURIComponent(v.join('='));
  }
  return '';
}

export function signIn() {
  const next = location.pathname + location.search + location.hash;
  location.assign('/auth/login?next=' + encodeURIComponent(next));
}

export class APIError extends Error {
  constructor(status, body) {
    super((body && body.error) || `the gateway answered ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function request(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const csrf = cookie('sluice_csrf');
  if (csrf && method !== 'GET') headers['X-Sluice-CSRF'] = csrf;
  const resp = await fetch(path, {
    method, headers, credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (resp.status === 401) {
    signIn();
    throw new APIError(401, { error: 'not signed in' });
  }
  let data = null;
  if ((resp.headers.get('Content-Type') || '').includes('json')) data = await resp.json();
  return { status: resp.status, ok: resp.ok, data };
}

async function get(path) {
  const r = await request('GET', path);
  if (!r.ok) throw new APIError(r.status, r.data);
  return r.data;
}

const enc = encodeURIComponent;
const rolloutPath = (ns, name) => `/api/v1/namespaces/${enc(ns)}/rollouts/${enc(name)}`;

export const whoami = () => get('/api/v1/whoami');

export function listRollouts({ namespace, phase } = {}) {
  const q = new URLSearchParams();
  if (namespace) q.set('namespace', namespace);
  if (phase) q.set('phase', phase);
  const qs = q.toString();
  return get('/api/v1/rollouts' + (qs ? '?' + qs : '')).then((d) => d.items || []);
}

export const getRollout = (ns, name) => get(rolloutPath(ns, name));

export function listExperiments({ namespace } = {}) {
  const qs = namespace ? '?' + new URLSearchParams({ namespace }) : '';
  return get('/api/v1/experiments' + qs).then((d) => d.items || []);
}

export const getHistory = (ns, name) => get(rolloutPath(ns, name) + '/history').then((d) => d.items || []);

// command sends verb (promote, abort, ...) and resolves with the answer's
// body and status code, refused or not: the caller shows it.
export async function command(ns, name, verb, body) {
  const r = await request('POST', `${rolloutPath(ns, name)}/${verb}`, body || {});
  return { httpStatus: r.status, ...(r.data || { outcome: 'error', reason: `the gateway answered ${r.status}` }) };
}

export const signOut = () => request('POST', '/auth/logout');

// stream follows status events, calling onEvent(ce, seq) for each; the
// browser's EventSource reconnects with Last-Event-ID by itself. It
// returns a function that stops following.
export function stream({ namespace, rollout } = {}, onEvent) {
  const q = new URLSearchParams();
  if (namespace) q.set('namespace', namespace);
  if (rollout) q.set('rollout', rollout);
  const qs = q.toString();
  const es = new EventSource('/api/v1/stream' + (qs ? '?' + qs : ''));
  const handle = (msg) => {
    let ce;
    try { ce = JSON.parse(msg.data); } catch { return; }
    onEvent(ce, msg.lastEventId);
  };
  for (const t of statusTypes) es.addEventListener(t, handle);
  es.addEventListener('message', handle);
  return () => es.close();
}

// Roles, weakest first; canDo says whether the caller may act with need
// in ns. whoami gives the role in every namespace ("*") and, by name, the
// namespaces where it differs, higher or lower.
const roles = ['', 'viewer', 'operator', 'admin'];
export function canDo(me, ns, need) {
  if (!me || me.readOnly) return false;
  const r = me.roles || {};
  const have = roles.indexOf((ns in r ? r[ns] : r['*']) || '');
  return have >= roles.indexOf(need);
}
