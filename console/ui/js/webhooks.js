// Webhooks: the list, registration (the secret shown once, with a copy
// button), editing, pause and resume, secret rotation, a test ping, and a
// webhook's delivery log with every attempt and a redeliver button.

import { h, replace, problemBox, show, pretty, toast, uid, when, short } from './dom.js';
import { call, schema } from './api.js';

const EVENTS = ['created', 'updated', 'deleted'];
const FORMATS = [['event', 'the full event'], ['hasura', 'Hasura\'s payload'], ['ids', 'ids only, batched']];

// eventsText is what fires a webhook: its mutations, or its
// classification's transitions.
function eventsText(w) {
  if (w.classification) return `${w.classification.name} transitions`;
  return (w.events && w.events.length ? w.events : EVENTS).join(', ');
}

function state(w) {
  if (!w.enabled) return `disabled${w.disabledReason ? `: ${w.disabledReason}` : ''}`;
  return w.paused ? 'paused' : 'active';
}

export async function list(main) {
  const r = await call('GET', '/v1/_webhooks');
  const hooks = r.data.data || [];
  replace(main,
    h('h1', { text: 'Webhooks' }),
    h('p', {}, h('a', { href: '#/webhooks/new', class: 'button', text: 'Register a webhook' })),
    hooks.length ? h('div', { class: 'scroll' }, h('table', {},
      h('caption', { class: 'sr-only', text: 'Registered webhooks' }),
      h('thead', {}, h('tr', {}, ['Name', 'URL', 'Resource', 'Events', 'Format', 'State'].map((c) => h('th', { scope: 'col', text: c })))),
      h('tbody', {}, hooks.map((w) => h('tr', {},
        h('td', {}, h('a', { href: `#/webhooks/${encodeURIComponent(w.id)}`, text: w.name })),
        h('td', { class: 'mono cell', title: w.url, text: w.url }),
        h('td', { text: w.resource }),
        h('td', { text: eventsText(w) }),
        h('td', { text: w.format }),
        h('td', { class: `state-${w.enabled ? (w.paused ? 'paused' : 'active') : 'disabled'}`, text: state(w) }))))))
      : h('p', { class: 'muted', text: 'No webhooks yet.' }));
  return undefined;
}

// webhookForm is the registration (hook null) or edit form. An edit sends
// only the keys that changed.
async function webhookForm(hook, { done, cancel }) {
  const s = await schema();
  const names = (s.resources || []).map((r) => r.name);
  const ids = {};
  const errs = {};
  const field = (key, label, el, hint) => {
    el.id = el.id || uid('wh');
    el.name = key;
    ids[key] = el.id;
    el.setAttribute('aria-describedby', `${el.id}-hint ${el.id}-error`);
    errs[key] = h('p', { id: `${el.id}-error`, class: 'field-error', hidden: true });
    return h('div', { class: 'field' }, h('label', { for: el.id, text: label }), el,
      h('p', { id: `${el.id}-hint`, class: 'hint', text: hint || '' }), errs[key]);
  };
  const name = h('input', { type: 'text', required: true, value: hook ? hook.name : '', autocomplete: 'off' });
  const url = h('input', { type: 'url', required: true, value: hook ? hook.url : '', autocomplete: 'off', spellcheck: 'false', placeholder: 'https://example.com/hooks/herald' });
  // A resource no longer declared stays selectable, so Save keeps it.
  if (hook && !names.includes(hook.resource) && hook.resource !== '*') names.push(hook.resource);
  const resource = h('select', {}, [...names, '*'].map((n) => h('option', { value: n, text: n === '*' ? '* (every resource)' : n, selected: hook && hook.resource === n })));
  const events = EVENTS.map((e) => {
    const id = uid('ev');
    const box = h('input', { type: 'checkbox', id, value: e, checked: !hook || !hook.events || !hook.events.length || hook.events.includes(e) });
    return { e, box, node: h('span', { class: 'check' }, box, ' ', h('label', { for: id, text: e })) };
  });
  errs.events = h('p', { class: 'field-error', hidden: true });
  const fields = h('input', { type: 'text', value: hook && hook.fields ? hook.fields.join(', ') : '', autocomplete: 'off', spellcheck: 'false' });
  const format = h('select', {}, FORMATS.map(([v, t]) => h('option', { value: v, text: `${v}: ${t}`, selected: hook ? hook.format === v : v === 'event' })));
  const pausedId = uid('wh');
  const paused = h('input', { type: 'checkbox', id: pausedId, checked: hook ? hook.paused : false });
  const general = h('div', { 'aria-live': 'assertive' });

  const values = () => ({
    name: name.value.trim(),
    url: url.value.trim(),
    resource: resource.value,
    events: events.filter((x) => x.box.checked).map((x) => x.e),
    fields: fields.value.split(',').map((x) => x.trim()).filter(Boolean),
    format: format.value,
    paused: paused.checked,
  });

  const heading = uid('whf');
  const form = h('form', { class: 'card', novalidate: true, 'aria-labelledby': heading, onsubmit: async (e) => {
    e.preventDefault();
    Object.values(errs).forEach((el) => { el.hidden = true; el.textContent = ''; });
    form.querySelectorAll('[aria-invalid]').forEach((el) => el.removeAttribute('aria-invalid'));
    replace(general);
    let body = values();
    if (hook) {
      const before = { name: hook.name, url: hook.url, resource: hook.resource, events: hook.events && hook.events.length ? hook.events : EVENTS,
        fields: hook.fields || [], format: hook.format, paused: hook.paused };
      body = Object.fromEntries(Object.entries(body).filter(([k, v]) => JSON.stringify(v) !== JSON.stringify(before[k])));
      if (!Object.keys(body).length) { cancel(); return; }
    }
    try {
      const r = hook ? await call('PATCH', `/v1/_webhooks/${encodeURIComponent(hook.id)}`, { body }) : await call('POST', '/v1/_webhooks', { body });
      done(r.data);
    } catch (err) {
      const rest = [];
      let first = null;
      for (const fe of (err.problem && err.problem.errors) || []) {
        const key = String(fe.field || '').split(/[.[]/)[0];
        if (errs[key]) {
          errs[key].textContent = fe.message || fe.rule;
          errs[key].hidden = false;
          const el = ids[key] && document.getElementById(ids[key]);
          if (el) { el.setAttribute('aria-invalid', 'true'); first = first || el; }
        } else rest.push(fe);
      }
      replace(general, problemBox({ ...err, status: err.status, problem: { ...err.problem, errors: rest } }, hook ? 'Not saved' : 'Not registered'));
      if (first) first.focus();
    }
  } },
  h('h2', { id: heading, text: hook ? `Edit ${hook.name}` : 'Register a webhook' }),
  general,
  field('name', 'Name', name, 'A unique name.'),
  field('url', 'URL', url, 'Where deliveries are POSTed (http or https).'),
  field('resource', 'Resource', resource, 'The resource whose changes fire it.'),
  h('fieldset', {}, h('legend', { text: 'Events' }), events.map((x) => x.node), errs.events),
  field('fields', 'Only when these fields change (optional)', fields, 'Comma-separated field names; updates of other fields do not fire it.'),
  field('format', 'Payload format', format),
  h('div', { class: 'field' }, h('span', { class: 'check' }, paused, ' ', h('label', { for: pausedId, text: 'Paused (deliveries wait until resumed)' }))),
  h('div', { class: 'row' },
    h('button', { type: 'submit', text: hook ? 'Save' : 'Register' }),
    h('button', { type: 'button', class: 'secondary', text: 'Cancel', onclick: cancel })));
  return form;
}

// secretBox shows a signing secret once, with a copy button.
function secretBox(secret, what) {
  const id = uid('secret');
  const out = h('input', { id, type: 'text', readonly: true, class: 'mono', value: secret, size: 48 });
  const copied = h('span', { role: 'status', class: 'muted' });
  return h('div', { class: 'secret card', role: 'region', 'aria-label': 'Signing secret' },
    h('label', { for: id, text: `${what}: copy it now, it is not shown again` }),
    h('div', { class: 'row' }, out,
      h('button', { type: 'button', text: 'Copy', onclick: async () => {
        out.select();
        try { await navigator.clipboard.writeText(secret); copied.textContent = 'Copied.'; } catch {
          copied.textContent = document.execCommand && document.execCommand('copy') ? 'Copied.' : 'Select and copy it by hand.';
        }
      } }), copied));
}

export async function create(main) {
  const box = h('div');
  replace(main, h('h1', { text: 'Register a webhook' }), box);
  replace(box, await webhookForm(null, {
    done(w) {
      replace(main, h('h1', { text: `Registered ${w.name}` }),
        secretBox(w.secret, 'Its signing secret (Standard Webhooks, whsec_…)'),
        h('p', {}, h('a', { href: `#/webhooks/${encodeURIComponent(w.id)}`, text: 'Open the webhook and its delivery log →' })));
      main.querySelector('input').focus();
    },
    cancel() { location.hash = '#/webhooks'; },
  }));
  box.querySelector('input').focus();
  return undefined;
}

export async function detail(main, id) {
  const base = `/v1/_webhooks/${encodeURIComponent(id)}`;
  const top = h('div');
  const formBox = h('div');
  const notice = h('div', { 'aria-live': 'polite' });
  const deliveriesBox = h('div');
  const open = new Set();
  let older = null;
  let timer;
  let shown = '';
  let stopped = false;
  let loading = null;

  async function loadHook() {
    const r = await call('GET', base);
    const focused = top.contains(document.activeElement) ? document.activeElement.dataset.action : null;
    const w = r.data;
    replace(top,
      h('h1', {}, 'Webhook ', h('span', { text: w.name })),
      h('p', {}, h('a', { href: '#/webhooks', text: '← Webhooks' })),
      h('dl', { class: 'pairs' },
        h('dt', { text: 'URL' }), h('dd', { class: 'mono', text: w.url }),
        h('dt', { text: 'Resource' }), h('dd', { text: w.resource }),
        h('dt', { text: 'Events' }), h('dd', { text: eventsText(w) }),
        w.fields && w.fields.length ? [h('dt', { text: 'Fields' }), h('dd', { text: w.fields.join(', ') })] : null,
        w.related && w.related.length ? [h('dt', { text: 'Related' }), h('dd', { text: w.related.join(', ') })] : null,
        w.classification ? [h('dt', { text: 'Classification' }), h('dd', { text: show(w.classification) })] : null,
        h('dt', { text: 'Format' }), h('dd', { text: w.format }),
        h('dt', { text: 'State' }), h('dd', { class: 'state', text: state(w) }),
        h('dt', { text: 'Id' }), h('dd', { class: 'mono', text: w.id })),
      h('div', { class: 'row actions' },
        h('button', { type: 'button', class: 'secondary', text: 'Edit', dataset: { action: 'edit' }, onclick: async () => {
          replace(formBox, await webhookForm(w, {
            done() { replace(formBox); toast('Saved.'); loadHook().then(() => top.querySelector('[data-action="edit"]')?.focus()); },
            cancel() { replace(formBox); top.querySelector('[data-action="edit"]')?.focus(); },
          }));
          formBox.querySelector('input').focus();
        } }),
        !w.enabled
          ? h('button', { type: 'button', text: 'Enable', dataset: { action: 'toggle' }, onclick: () => patch({ enabled: true }, 'Enabled.') })
          : h('button', { type: 'button', class: 'secondary', text: w.paused ? 'Resume' : 'Pause', dataset: { action: 'toggle' }, onclick: () => patch({ paused: !w.paused }, w.paused ? 'Resumed.' : 'Paused.') }),
        h('button', { type: 'button', class: 'secondary', text: 'Send a test ping', onclick: async () => {
          try {
            const d = await call('POST', `${base}/test`);
            toast(`Ping queued as delivery ${d.data.id}.`);
            loadDeliveries();
          } catch (err) { replace(notice, problemBox(err, 'No ping')); }
        } }),
        h('button', { type: 'button', class: 'secondary', text: 'Rotate the secret', onclick: async () => {
          if (!window.confirm('Rotate the signing secret? For 24 hours deliveries carry both signatures.')) return;
          try {
            const d = await call('POST', `${base}/rotate-secret`);
            replace(notice, secretBox(d.data.secret, 'The new signing secret'));
            notice.querySelector('input').focus();
          } catch (err) { replace(notice, problemBox(err, 'Not rotated')); }
        } }),
        h('button', { type: 'button', class: 'danger', text: 'Delete', onclick: async () => {
          if (!window.confirm(`Delete the webhook ${w.name}? Its pending deliveries are dropped.`)) return;
          try { await call('DELETE', base); toast('Deleted.'); location.hash = '#/webhooks'; } catch (err) { replace(notice, problemBox(err, 'Not deleted')); }
        } })));
    if (focused) top.querySelector(`[data-action="${focused}"]`)?.focus();
  }

  async function patch(body, message) {
    try { await call('PATCH', base, { body }); toast(message); await loadHook(); } catch (err) { replace(notice, problemBox(err)); }
  }

  // One load at a time; the page's cleanup stops the refresh for good.
  function loadDeliveries() {
    if (stopped) return Promise.resolve();
    if (!loading) loading = loadOnce().finally(() => { loading = null; });
    return loading;
  }

  async function loadOnce() {
    clearTimeout(timer);
    try {
      const r = await call('GET', `${base}/deliveries`, { query: { limit: '50' } });
      older = r.data.meta && r.data.meta.next;
      // Re-rendered only when something changed, so focus stays put.
      const now = JSON.stringify(r.data);
      if (now !== shown) { shown = now; renderDeliveries(r.data.data || []); }
    } catch (err) {
      replace(deliveriesBox, problemBox(err, 'The delivery log could not be read'));
    }
    // The log refreshes while the page is open; open rows stay open.
    if (!stopped) timer = setTimeout(loadDeliveries, 2000);
  }

  function renderDeliveries(list) {
    if (!list.length) { replace(deliveriesBox, h('p', { class: 'muted', text: 'No deliveries yet.' })); return; }
    // The focus stays on the same control across a refresh.
    const focused = deliveriesBox.contains(document.activeElement) ? document.activeElement.dataset.focusKey : null;
    replace(deliveriesBox, h('ul', { class: 'deliveries plain' }, list.map(deliveryItem)),
      older ? h('p', { class: 'muted', text: 'Older deliveries are not shown (the latest 50).' }) : null);
    if (focused) deliveriesBox.querySelector(`[data-focus-key="${focused}"]`)?.focus();
  }

  function deliveryItem(d) {
    const last = d.attemptLog && d.attemptLog.length ? d.attemptLog[d.attemptLog.length - 1] : null;
    const details = h('details', { open: open.has(d.id), dataset: { deliveryId: d.id }, ontoggle: () => {
      if (details.open) open.add(d.id); else open.delete(d.id);
    } },
    h('summary', { dataset: { focusKey: `summary-${d.id}` } },
      h('span', { class: `badge status-${d.status}`, text: d.status }), ' ',
      h('span', { class: 'mono', text: d.eventType }), ' ',
      d.resourceId ? short(d.resourceId) : null, ' ',
      h('span', { class: 'muted', text: `delivery ${d.id} · ${d.attempts} attempt(s)${last && last.statusCode ? ` · last ${last.statusCode}` : ''}` }), ' ',
      when(d.createdAt)),
    h('div', { class: 'row' },
      h('button', { type: 'button', class: 'secondary', text: 'Redeliver', 'aria-label': `Redeliver delivery ${d.id}`, dataset: { focusKey: `redeliver-${d.id}` }, onclick: async () => {
        try {
          await call('POST', `/v1/_deliveries/${encodeURIComponent(d.id)}/redeliver`);
          toast(`Delivery ${d.id} queued again.`);
          loadDeliveries();
        } catch (err) { replace(notice, problemBox(err, 'Not redelivered')); }
      } }),
      d.nextAttemptAt ? h('span', { class: 'muted' }, 'next attempt ', when(d.nextAttemptAt)) : null),
    d.attemptLog && d.attemptLog.length ? h('table', { class: 'attempts' },
      h('thead', {}, h('tr', {}, ['Attempt', 'At', 'Status', 'Latency', 'Response'].map((c) => h('th', { scope: 'col', text: c })))),
      h('tbody', {}, d.attemptLog.map((a) => h('tr', {},
        h('td', { text: a.attempt }),
        h('td', {}, when(a.at)),
        h('td', { class: 'attempt-status', text: a.statusCode ? String(a.statusCode) : (a.error || 'no answer') }),
        h('td', { text: `${Number(a.latencyMs).toFixed(1)} ms` }),
        h('td', {}, h('pre', { class: 'excerpt', text: a.response || '' }))))))
      : h('p', { class: 'muted', text: 'No attempt yet.' }),
    h('details', {}, h('summary', { text: 'Payload' }), h('pre', { class: 'json', text: pretty(d.payload) })));
    return h('li', {}, details);
  }

  replace(main, top, notice, formBox, h('h2', { text: 'Delivery log' }),
    h('div', { class: 'row' }, h('button', { type: 'button', class: 'secondary', text: 'Refresh', onclick: loadDeliveries })),
    deliveriesBox);
  await loadHook();
  await loadDeliveries();
  return () => { stopped = true; clearTimeout(timer); };
}
