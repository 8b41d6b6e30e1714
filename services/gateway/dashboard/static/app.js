// app.js: the page shell. It sets the theme, shows who is signed in, and
// routes the hash: #/ (with ?namespace=&phase=) is the rollout list,
// #/ns/NAMESPACE/NAME a rollout's page, #/experiments (with ?namespace=)
// the standalone Experiments.
import * as api from './api.js';
import { el, replace } from './ui.js';
import { listPage } from './list.js';
import { rolloutPage } from './rollout.js';
import { experimentsPage } from './experiments.js';

const main = document.getElementById('main');
const themeKey = 'sluice-theme';

function applyTheme(theme) {
  if (theme) document.documentElement.dataset.theme = theme;
  else delete document.documentElement.dataset.theme;
  const dark = theme ? theme === 'dark' : matchMedia('(prefers-color-scheme: dark)').matches;
  const b = document.getElementById('theme');
  b.textContent = dark ? '☀' : '☾';
  b.setAttribute('aria-label', dark ? 'Switch to the light theme' : 'Switch to the dark theme');
}

function setupTheme() {
  applyTheme(localStorage.getItem(themeKey));
  document.getElementById('theme').addEventListener('click', () => {
    const current = document.documentElement.dataset.theme ||
      (matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light');
    const next = current === 'dark' ? 'light' : 'dark';
    localStorage.setItem(themeKey, next);
    applyTheme(next);
  });
  matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => applyTheme(localStorage.getItem(themeKey)));
}

function showWho(me) {
  const who = document.getElementById('who');
  const roles = Object.entries(me.roles || {}).map(([ns, r]) => `${r} in ${ns === '*' ? 'every namespace' : ns}`).join(', ');
  replace(who,
    el('span', { class: 'actor', title: roles || 'no roles' }, me.actor || 'anonymous'),
    me.readOnly ? el('span', { class: 'badge muted-badge' }, 'read-only') : null,
    me.via === 'session'
      ? el('button', {
        type: 'button', class: 'ghost', id: 'signout',
        onclick: async () => { await api.signOut().catch(() => {}); location.assign('/auth/login'); },
      }, 'Sign out')
      : null);
}

let leave = () => {};

function route(me) {
  leave();
  leave = () => {};
  const hash = location.hash.replace(/^#/, '') || '/';
  const [path, query] = hash.split('?');
  const params = new URLSearchParams(query || '');
  const m = path.match(/^\/ns\/([^/]+)\/([^/]+)$/);
  if (m) {
    leave = rolloutPage(main, me, decodeURIComponent(m[1]), decodeURIComponent(m[2]));
  } else if (path === '/experiments') {
    leave = experimentsPage(main, me, params);
  } else {
    leave = listPage(main, me, params);
  }
}

async function start() {
  setupTheme();
  let me;
  try {
    me = await api.whoami();
  } catch (err) {
    if (err.status === 401) return; // on the way to the sign-in page
    replace(main, el('p', { class: 'error', role: 'alert' }, `Cannot reach the gateway: ${err.message}`));
    return;
  }
  showWho(me);
  addEventListener('hashchange', () => {
    route(me);
    main.focus({ preventScroll: true }); // a screen reader starts at the new page
  });
  route(me);
}

start();
