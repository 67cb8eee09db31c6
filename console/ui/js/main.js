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

const routes = [
  [/^#\/resources$/, () => resources.view(main)],
  [/^#\/records$/, () => records.list(main, '')],
  [/^#\/records\/([^/]+)$/, (m) => records.list(main, m[1])],
  [/^#\/records\/([^/]+)\/([^/]+)$/, (m) => records.detail(main, m[1], m[2])],
  [/^#\/events$/, () => events.view(main)],
  [/^#\/events\/([^/]+)$/, (m) => events.detail(main, m[1])],
  [/^#\/webhooks$/, () => webhooks.list(main)],
  [/^#\/webhooks\/new$/, () => webhooks.create(main)],
  [/^#\/webhooks\/([^/]+)$/, (m) => webhooks.detail(main, m[1])],
];

async function route() {
  if (teardown) { teardown(); teardown = null; }
  if (!session.key()) { signIn(); return; }
  nav.hidden = false;
  const hash = location.hash && location.hash !== '#' ? location.hash : '#/resources';
  for (const a of nav.querySelectorAll('a')) {
    const here = hash === a.getAttribute('href') || hash.startsWith(a.getAttribute('href') + '/');
    if (here) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  const found = routes.find(([re]) => re.test(hash));
  if (!found) {
    replace(main, h('h1', { text: 'Not found' }), h('p', {}, 'No page here. ', h('a', { href: '#/resources', text: 'Go to resources' })));
    return;
  }
  replace(main, h('p', { class: 'muted', text: 'Loading…' }));
  try {
    const m = hash.match(found[0]).map((x, i) => (i ? decodeURIComponent(x) : x));
    teardown = (await found[1](m)) || null;
  } catch (err) {
    replace(main, h('h1', { text: 'This page could not be shown' }), problemBox(err));
  }
  if (navigated) {
    const heading = main.querySelector('h1');
    if (heading) { heading.tabIndex = -1; heading.focus(); }
  }
  navigated = true;
}

function signIn(message) {
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

window.addEventListener('hashchange', route);
if (session.key()) live.start();
route();
