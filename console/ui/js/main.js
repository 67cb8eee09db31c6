// The console's entry point: sign-in, the navigation and a hash router
// (#/resources, #/records/products, #/events/<eventId>, #/webhooks/<id>).

import { h, replace, problemBox } from './dom.js';
import { call, session, onUnauthorized, forget } from './api.js';
import * as live from './live.js';
import * as resources from './resources.js';
import * as records from './records.js';
import * as events from './events.js';
import * as webhooks from './webhooks.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
let teardown = null;
let navigated = false;

// Each route renders into a fresh box that replaces the page only when it
// is ready and still current: a slow page the reader already left never
// draws over the next one, and its cleanup runs at once.
const routes = [
  [/^#\/resources$/, (box) => resources.view(box)],
  [/^#\/records$/, (box) => records.list(box, '')],
  [/^#\/records\/([^/]+)$/, (box, m) => records.list(box, m[1])],
  [/^#\/records\/([^/]+)\/([^/]+)$/, (box, m) => records.detail(box, m[1], m[2])],
  [/^#\/events$/, (box) => events.view(box)],
  [/^#\/events\/([^/]+)$/, (box, m) => events.detail(box, m[1])],
  [/^#\/webhooks$/, (box) => webhooks.list(box)],
  [/^#\/webhooks\/new$/, (box) => webhooks.create(box)],
  [/^#\/webhooks\/([^/]+)$/, (box, m) => webhooks.detail(box, m[1])],
];

let generation = 0;

// leave ends the current page: its streams and timers stop, and a page
// still loading is told it is no longer wanted.
function leave() {
  generation += 1;
  if (teardown) { teardown(); teardown = null; }
}

async function route() {
  leave();
  const gen = generation;
  if (!session.key()) { signIn(); return; }
  nav.hidden = false;
  const hash = location.hash && location.hash.startsWith('#/') ? location.hash : '#/resources';
  for (const a of nav.querySelectorAll('a')) {
    const here = hash === a.getAttribute('href') || hash.startsWith(a.getAttribute('href') + '/');
    if (here) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  const found = routes.find(([re]) => re.test(hash));
  if (!found) {
    replace(main, h('h1', { text: 'Not found' }), h('p', {}, 'No page here. ', h('a', { href: '#/resources', text: 'Go to resources' })));
    return;
  }
  if (!main.firstElementChild || main.firstElementChild.tagName !== 'H1') replace(main, h('p', { class: 'muted', text: 'Loading…' }));
  const box = h('div', { class: 'page' });
  let done = null;
  try {
    const m = hash.match(found[0]).map((x, i) => (i ? decodeURIComponent(x) : x));
    done = (await found[1](box, m)) || null;
  } catch (err) {
    if (gen !== generation || err.status === 401) { if (done) done(); return; }
    replace(box, h('h1', { text: 'This page could not be shown' }), problemBox(err));
  }
  if (gen !== generation) { if (done) done(); return; }
  teardown = done;
  replace(main, box);
  if (navigated) {
    const heading = main.querySelector('h1');
    if (heading) { heading.tabIndex = -1; heading.focus(); }
  }
  navigated = true;
}

function signIn(message) {
  leave();
  nav.hidden = true;
  live.stop();
  const id = 'admin-key';
  const input = h('input', { id, name: 'key', type: 'password', autocomplete: 'current-password', required: true,
    spellcheck: 'false', 'aria-describedby': 'admin-key-help signin-error' });
  const error = h('p', { id: 'signin-error', class: 'error', role: 'alert', text: message || '' });
  const button = h('button', { type: 'submit', text: 'Sign in' });
  const form = h('form', { class: 'signin', novalidate: true, onsubmit: async (e) => {
    e.preventDefault();
    const key = input.value.trim();
    if (!key) { error.textContent = 'Enter the admin key.'; input.focus(); return; }
    button.disabled = true;
    error.textContent = '';
    try {
      await call('GET', '/v1/_registry', { key });
      session.signIn(key);
      forget();
      live.start();
      navigated = false;
      if (!location.hash || location.hash === '#') location.hash = '#/resources';
      await route();
    } catch (err) {
      if (err.status === 401) {
        error.textContent = 'That key was refused (401): it is not Herald\'s admin key. Use the value of HERALD_ADMIN_KEY, or the key Herald printed when it started.';
      } else if (err.status === 403) {
        error.textContent = 'That token is valid, but not the admin key (403): the console needs the admin key.';
      } else {
        error.textContent = `Herald could not check the key: ${err.message}`;
      }
      input.focus();
      input.select();
    } finally {
      button.disabled = false;
    }
  } },
  h('h1', { text: 'Sign in to Herald' }),
  h('label', { for: id, text: 'Admin key' }),
  input,
  h('p', { id: 'admin-key-help', class: 'muted', text: 'Kept in this tab only (session storage) and sent as a bearer token to Herald\'s API.' }),
  error,
  button);
  replace(main, form);
  input.focus();
}

onUnauthorized(() => {
  if (!session.key()) return; // signed out already (several calls failed)
  session.signOut();
  signIn('Herald no longer accepts the key (401). Sign in again.');
});

document.getElementById('signout').addEventListener('click', () => {
  session.signOut();
  live.stop();
  history.replaceState(null, '', '#/resources');
  signIn('Signed out.');
});

// The nav shows how many events arrived since the log was last looked at.
live.subscribe(() => {
  const link = nav.querySelector('a[href="#/events"]');
  const n = live.unseenCount();
  link.textContent = n && !location.hash.startsWith('#/events') ? `Live events (${n})` : 'Live events';
});

// The skip link moves the focus; it is not a page of the router.
document.querySelector('.skip').addEventListener('click', (e) => {
  e.preventDefault();
  main.focus();
});

window.addEventListener('hashchange', () => {
  if (location.hash.startsWith('#/') || !location.hash) route();
});
if (session.key()) live.start();
route();
