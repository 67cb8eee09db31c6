// The live event log (the admin stream, see live.js) and one event's page
// with its old, new and changes shown as a diff.

import { h, replace, problemBox, show, pretty, uid, when, short } from './dom.js';
import { call, schema } from './api.js';
import * as live from './live.js';

const OPS = ['created', 'updated', 'deleted', 'classified', 'manual'];

// who names the caller that caused an event, from its session variables.
export function who(ev) {
  const s = ev.sessionVariables || {};
  const role = s.role || s['x-hasura-role'] || '';
  const user = s.userId || s['x-hasura-user-id'] || '';
  if (user) return role ? `${user} (${role})` : user;
  return role || 'unknown';
}

function traceId(ev) { return (ev.traceContext && ev.traceContext.traceId) || ''; }

export async function view(main) {
  const s = await schema().catch(() => ({ resources: [] }));
  const filter = live.currentFilter();
  const rId = uid('lr'); const tId = uid('lt');
  const resSel = h('select', { id: rId }, h('option', { value: '', text: 'every resource' }),
    (s.resources || []).map((r) => h('option', { value: r.name, text: r.name, selected: filter.resources === r.name })));
  const typeSel = h('select', { id: tId }, h('option', { value: '', text: 'every type' }),
    OPS.map((o) => h('option', { value: o, text: o, selected: filter.types === o })));
  const onFilter = () => { live.setFilter({ resources: resSel.value, types: typeSel.value }); render(); };
  resSel.addEventListener('change', onFilter);
  typeSel.addEventListener('change', onFilter);

  const status = h('p', { class: 'status', role: 'status' });
  const notice = h('div');
  const body = h('tbody');
  const table = h('table', { class: 'events' },
    h('caption', { class: 'sr-only', text: 'Events, newest first' }),
    h('thead', {}, h('tr', {}, ['Id', 'Type', 'Resource', 'Record', 'Who', 'Trace', 'Committed'].map((c) => h('th', { scope: 'col', text: c })))),
    body);
  const empty = h('p', { class: 'muted', text: 'Waiting for events. Create, update or delete a record and it shows here.' });

  function row(ev) {
    const href = `#/events/${encodeURIComponent(ev.eventId)}`;
    return h('tr', { class: 'clickable', dataset: { eventId: ev.eventId }, onclick: (e) => { if (e.target.tagName !== 'A') location.hash = href; } },
      h('td', { class: 'mono', text: ev.id }),
      h('td', {}, h('a', { href, class: 'mono', text: ev.eventType })),
      h('td', { text: ev.resourceName }),
      h('td', {}, ev.resourceId ? short(ev.resourceId) : ''),
      h('td', { text: who(ev) }),
      h('td', {}, traceId(ev) ? short(traceId(ev)) : ''),
      h('td', {}, when(ev.createdAt)));
  }

  function render() {
    const shown = live.log().filter((ev) => live.matches(ev));
    replace(body, shown.map(row));
    empty.hidden = shown.length > 0;
    table.hidden = shown.length === 0;
  }

  function renderStatus() {
    const st = live.currentStatus();
    const text = { open: 'Live: connected.', connecting: 'Connecting…', retrying: `Reconnecting (${st.detail})…`, stopped: `Stopped${st.detail ? `: ${st.detail}` : ''}.` }[st.state] || st.state;
    status.textContent = text;
    status.dataset.state = st.state;
  }

  const unsubscribe = live.subscribe((change) => {
    if (change.status) renderStatus();
    if (change.event && live.matches(change.event)) {
      body.prepend(row(change.event));
      empty.hidden = true;
      table.hidden = false;
    }
    if (change.event) live.markSeen();
    if (change.cleared) render();
    if (change.reset) {
      replace(notice, h('p', { class: 'warn', role: 'alert', text: `Events after ${change.reset.lastEventId} up to ${change.reset.removedThrough} are no longer in the log (removed by retention) and were not seen here.` }));
    }
  });
  live.markSeen();

  replace(main,
    h('h1', { text: 'Live events' }),
    status,
    h('form', { class: 'row filters', onsubmit: (e) => e.preventDefault() },
      h('label', { for: rId, text: 'Resource' }), resSel,
      h('label', { for: tId, text: 'Type' }), typeSel,
      h('button', { type: 'button', class: 'secondary', text: 'Clear the log', onclick: () => live.clear() })),
    notice, empty, h('div', { class: 'scroll' }, table));
  render();
  renderStatus();
  return unsubscribe;
}

export async function detail(main, eventId) {
  const r = await call('GET', `/v1/_events/${encodeURIComponent(eventId)}`);
  const ev = r.data;
  const rec = ev.resourceId && ev.data && (ev.data.new || ev.data.old)
    ? h('a', { href: `#/records/${encodeURIComponent(ev.resourceName)}/${encodeURIComponent(ev.resourceId)}`, class: 'mono', text: ev.resourceId })
    : h('span', { class: 'mono', text: ev.resourceId || '' });
  replace(main,
    h('h1', {}, h('span', { class: 'mono', text: ev.eventType }), ' ', h('span', { class: 'muted', text: `#${ev.id}` })),
    h('p', {}, h('a', { href: '#/events', text: '← Live events' })),
    h('dl', { class: 'pairs' },
      h('dt', { text: 'Event id' }), h('dd', { class: 'mono', text: ev.eventId }),
      h('dt', { text: 'Resource' }), h('dd', { text: ev.resourceName }),
      h('dt', { text: 'Record' }), h('dd', {}, rec),
      h('dt', { text: 'Committed' }), h('dd', {}, when(ev.createdAt)),
      h('dt', { text: 'Dispatched' }), h('dd', {}, when(ev.dispatchedAt)),
      h('dt', { text: 'Who' }), h('dd', { text: who(ev) }),
      h('dt', { text: 'Trace' }), h('dd', { class: 'mono', text: traceId(ev) ? `${traceId(ev)} / span ${ev.traceContext.spanId || ''}` : '—' })),
    ev.data && ev.data.classification ? h('p', {}, 'Classification ', h('code', { text: ev.data.classification.name }),
      `: ${show(ev.data.classification.from)} → ${show(ev.data.classification.to)}`) : null,
    h('h2', { text: 'Changes' }),
    diffTable(ev),
    h('h2', { text: 'Session variables' }),
    h('pre', { class: 'json', text: pretty(ev.sessionVariables || {}) }),
    h('details', {}, h('summary', { text: 'The whole event (JSON)' }), h('pre', { class: 'json', text: pretty(ev) })));
  return undefined;
}

// diffTable shows an event's old and new values side by side, each field
// marked added, changed, removed or unchanged (in words, not colour only).
export function diffTable(ev) {
  const data = ev.data || {};
  const oldRow = data.old || {};
  const newRow = data.new || {};
  const c = data.changes || {};
  const kind = (k) => {
    if ((c.updated || []).includes(k)) return 'changed';
    if ((c.added || []).includes(k)) return 'added';
    if ((c.removed || []).includes(k)) return 'removed';
    return 'unchanged';
  };
  const keys = [...new Set([...Object.keys(newRow), ...Object.keys(oldRow)])];
  if (!keys.length) return h('p', { class: 'muted', text: 'No data.' });
  const order = { changed: 0, added: 1, removed: 2, unchanged: 3 };
  keys.sort((a, b) => order[kind(a)] - order[kind(b)] || a.localeCompare(b));
  return h('div', { class: 'scroll' }, h('table', { class: 'diff' },
    h('caption', { class: 'sr-only', text: 'Old and new values' }),
    h('thead', {}, h('tr', {}, ['Field', 'Change', 'Old', 'New'].map((t) => h('th', { scope: 'col', text: t })))),
    h('tbody', {}, keys.map((k) => h('tr', { class: `diff-${kind(k)}` },
      h('th', { scope: 'row', class: 'mono', text: k }),
      h('td', { text: kind(k) }),
      h('td', { class: 'old value', text: k in oldRow ? show(oldRow[k]) : '' }),
      h('td', { class: 'new value', text: k in newRow ? show(newRow[k]) : '' }))))));
}
