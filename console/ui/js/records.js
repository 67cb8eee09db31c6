// Records of one resource: a table with filters, sort and keyset paging,
// forms generated from the field types and validations (the API's
// problem+json errors shown next to the fields they name), and a record's
// page with its history as a timeline.

import { h, replace, problemBox, show, toast, uid, when, short } from './dom.js';
import { call, schema, resourceDef } from './api.js';
import { diffTable, who } from './events.js';

const OPS = {
  string: ['eq', 'neq', 'gt', 'gte', 'lt', 'lte', 'like', 'ilike', 'in', 'isnull'],
  number: ['eq', 'neq', 'gt', 'gte', 'lt', 'lte', 'in', 'isnull'],
  boolean: ['eq', 'neq', 'isnull'],
  json: ['isnull'],
};

function opsFor(type) {
  if (['string', 'text', 'enum'].includes(type)) return OPS.string;
  if (type === 'boolean') return OPS.boolean;
  if (type === 'json') return OPS.json;
  return OPS.number;
}

export async function list(main, name) {
  const s = await schema();
  const defs = s.resources || [];
  if (!name) {
    if (defs.length) { location.replace(`#/records/${encodeURIComponent(defs[0].name)}`); return undefined; }
    replace(main, h('h1', { text: 'Records' }), h('p', {}, 'No resources yet: ', h('a', { href: '#/resources', text: 'import a schema' }), '.'));
    return undefined;
  }
  const def = defs.find((r) => r.name === name);
  if (!def) {
    replace(main, h('h1', { text: 'Records' }), h('p', { text: `No resource is named ${name}.` }));
    return undefined;
  }
  const fields = def.fields || [];
  const filterable = [{ name: 'id', type: 'uuid' }, ...fields.filter((f) => f.filterable || f.type === 'relation'),
    { name: 'created_at', type: 'datetime' }, { name: 'updated_at', type: 'datetime' }];
  const sortable = [...fields.filter((f) => f.sortable).map((f) => f.name), 'created_at', 'updated_at'];
  const state = { filters: [], sort: '-created_at', after: '', back: [] };

  const picker = h('select', { id: 'resource-picker', onchange: () => { location.hash = `#/records/${encodeURIComponent(picker.value)}`; } },
    defs.map((r) => h('option', { value: r.name, text: r.name, selected: r.name === name })));
  const tableBox = h('div', { class: 'scroll' });
  const formBox = h('div');
  const pager = h('div', { class: 'row' });

  // Filters.
  const fId = uid('ff'); const oId = uid('fo'); const vId = uid('fv');
  const fieldSel = h('select', { id: fId }, filterable.map((f) => h('option', { value: f.name, text: f.name })));
  const opSel = h('select', { id: oId });
  const value = h('input', { id: vId, type: 'text', placeholder: 'value' });
  const syncOps = () => {
    const f = filterable.find((x) => x.name === fieldSel.value);
    replace(opSel, opsFor(f.type).map((o) => h('option', { value: o, text: o })));
  };
  fieldSel.addEventListener('change', syncOps);
  syncOps();
  const chips = h('ul', { class: 'chips', 'aria-label': 'Filters in use' });
  const renderChips = () => replace(chips, state.filters.map((f, i) => h('li', {},
    h('span', { class: 'mono', text: `${f.field} ${f.op} ${JSON.stringify(f.value)}` }), ' ',
    h('button', { type: 'button', class: 'link', 'aria-label': `Remove filter ${f.field} ${f.op} ${f.value}`, text: '×', onclick: () => {
      state.filters.splice(i, 1); renderChips(); first();
    } }))));
  const filterForm = h('form', { class: 'row filters', onsubmit: (e) => {
    e.preventDefault();
    const v = opSel.value === 'isnull' && value.value === '' ? 'true' : value.value;
    state.filters.push({ field: fieldSel.value, op: opSel.value, value: v });
    value.value = '';
    renderChips();
    first();
  } },
  h('label', { for: fId, text: 'Field' }), fieldSel,
  h('label', { for: oId, text: 'Operator' }), opSel,
  h('label', { for: vId, text: 'Value' }), value,
  h('button', { type: 'submit', class: 'secondary', text: 'Add filter' }));

  const sId = uid('sort');
  const sortSel = h('select', { id: sId, onchange: () => { state.sort = sortSel.value; first(); } },
    sortable.flatMap((f) => [h('option', { value: `-${f}`, text: `${f}, newest/largest first`, selected: state.sort === `-${f}` }),
      h('option', { value: f, text: `${f}, oldest/smallest first`, selected: state.sort === f })]));

  function query() {
    const q = new URLSearchParams({ _limit: '20', _sort: state.sort });
    if (state.after) q.set('_after', state.after);
    // Always field__op: a bare name could be one of the list's own
    // parameters (fields, include), and an empty value is a real filter.
    for (const f of state.filters) q.append(`${f.field}__${f.op}`, f.value);
    return q;
  }

  function first() { state.after = ''; state.back = []; load(); }

  async function load() {
    try {
      const r = await call('GET', `/v1/${encodeURIComponent(name)}`, { query: query() });
      renderTable(r.data.data || []);
      const next = r.data.meta && r.data.meta.next;
      replace(pager,
        h('button', { type: 'button', class: 'secondary', text: '← Previous', disabled: !state.back.length, onclick: () => {
          state.after = state.back.pop(); load();
        } }),
        h('span', { class: 'muted', role: 'status', text: r.data.meta && r.data.meta.total !== undefined ? `${r.data.meta.total} record(s)` : '' }),
        h('button', { type: 'button', class: 'secondary', text: 'Next →', disabled: !next, onclick: () => {
          state.back.push(state.after); state.after = next; load();
        } }));
    } catch (err) {
      replace(tableBox, problemBox(err, 'The records could not be listed'));
    }
  }

  function renderTable(rows) {
    if (!rows.length) { replace(tableBox, h('p', { class: 'muted', text: 'No records match.' })); return; }
    replace(tableBox, h('table', { class: 'records' },
      h('caption', { class: 'sr-only', text: `Records of ${name}` }),
      h('thead', {}, h('tr', {}, ['id', ...fields.map((f) => f.name), 'updated_at', 'Actions'].map((c) => h('th', { scope: 'col', text: c })))),
      h('tbody', {}, rows.map((row) => h('tr', {},
        h('td', {}, h('a', { href: `#/records/${encodeURIComponent(name)}/${encodeURIComponent(row.id)}`, class: 'mono', title: row.id, text: String(row.id).slice(0, 8) + '…' })),
        fields.map((f) => h('td', { class: 'cell', title: show(row[f.name]), text: show(row[f.name]) })),
        h('td', {}, when(row.updated_at)),
        h('td', { class: 'actions' },
          h('button', { type: 'button', class: 'secondary', text: 'Edit', 'aria-label': `Edit ${row.id}`, onclick: () => edit(row.id) }),
          h('button', { type: 'button', class: 'danger', text: 'Delete', 'aria-label': `Delete ${row.id}`, onclick: () => remove(row.id) })))))));
  }

  async function edit(id) {
    try {
      const r = await call('GET', `/v1/${encodeURIComponent(name)}/${encodeURIComponent(id)}`);
      openForm(r.data, r.headers.get('ETag'));
    } catch (err) { toast(err.message, 'error'); }
  }

  async function remove(id) {
    if (!window.confirm(`Delete ${name} record ${id}?`)) return;
    try {
      await call('DELETE', `/v1/${encodeURIComponent(name)}/${encodeURIComponent(id)}`);
      toast(`Deleted ${id}.`);
      load();
    } catch (err) { toast(err.message, 'error'); }
  }

  function openForm(record, etag) {
    replace(formBox, recordForm(def, record, etag, {
      done(saved) {
        replace(formBox);
        toast(record ? `Saved ${saved.id}.` : `Created ${saved.id}.`);
        load();
      },
      cancel() { replace(formBox); },
    }));
    formBox.querySelector('input, select, textarea, button')?.focus();
  }

  replace(main,
    h('h1', {}, 'Records of ', h('span', { class: 'mono', text: name })),
    h('div', { class: 'row' },
      h('label', { for: 'resource-picker', text: 'Resource' }), picker,
      h('button', { type: 'button', text: 'New record', onclick: () => openForm(null, null) }),
      h('a', { href: '#/resources', class: 'small', text: 'Schema' })),
    formBox,
    filterForm, chips,
    h('div', { class: 'row' }, h('label', { for: sId, text: 'Sort by' }), sortSel),
    tableBox, pager);
  await load();
  return undefined;
}

// recordForm builds the create (record null) or edit form of a resource's
// record. A create sends the fields filled in; an edit sends the changed
// ones with If-Match, so a record changed meanwhile is not overwritten.
export function recordForm(def, record, etag, { done, cancel }) {
  const headingId = uid('form');
  const controls = (def.fields || []).map((f) => control(f, record ? record[f.name] : undefined));
  const general = h('div', { 'aria-live': 'assertive' });
  const form = h('form', { class: 'card record-form', novalidate: true, 'aria-labelledby': headingId, onsubmit: async (e) => {
    e.preventDefault();
    controls.forEach((c) => c.setError(''));
    replace(general);
    const body = {};
    let bad = null;
    for (const c of controls) {
      const v = c.read();
      if (v.error) { c.setError(v.error); bad = bad || c; continue; }
      if (record) {
        // Only the fields the reader changed: an untouched control may not
        // round-trip its value exactly (a datetime's microseconds, a
        // textarea's line ends, an enum value no longer declared).
        if (c.touched()) body[c.field.name] = v.value;
      } else if (v.present) {
        body[c.field.name] = v.value;
      }
    }
    if (bad) { bad.input.focus(); return; }
    const path = `/v1/${encodeURIComponent(def.name)}${record ? `/${encodeURIComponent(record.id)}` : ''}`;
    try {
      const r = await call(record ? 'PATCH' : 'POST', path, { body, headers: record && etag ? { 'If-Match': etag } : {} });
      done(r.data);
    } catch (err) {
      const rest = [];
      let firstBad = null;
      for (const fe of (err.problem && err.problem.errors) || []) {
        const key = String(fe.field || '').replace(/^\[\d+\]\.?/, '').split('.')[0];
        const c = controls.find((x) => x.field.name === key);
        if (c) { c.setError(fe.message || fe.rule); firstBad = firstBad || c; } else rest.push(fe);
      }
      const shown = { ...err, status: err.status, problem: { ...err.problem, errors: rest } };
      if (err.status === 412) shown.problem.detail = 'The record changed since this form was opened. Close it and edit again to see the new values.';
      replace(general, problemBox(shown, record ? 'Not saved' : 'Not created'));
      (firstBad ? firstBad.input : general).focus?.();
    }
  } },
  h('h2', { id: headingId, text: record ? `Edit ${def.name} ${record.id}` : `New ${def.name} record` }),
  general,
  controls.map((c) => c.node),
  h('div', { class: 'row' },
    h('button', { type: 'submit', text: record ? 'Save' : 'Create' }),
    h('button', { type: 'button', class: 'secondary', text: 'Cancel', onclick: cancel })));
  return form;
}

function hintFor(f) {
  const parts = [f.type];
  if (f.type === 'relation' && f.relation) parts.push(`the id of a ${f.relation.resource} record`);
  if (f.type === 'json') parts.push('any JSON value');
  if (f.unique) parts.push('unique');
  for (const v of f.validations || []) parts.push(v.value === undefined ? v.rule : `${v.rule} ${show(v.value)}`);
  if (f.default !== undefined) parts.push(`default ${show(f.default)}`);
  return parts.join(' · ');
}

// suggest fills a relation field's datalist with the target's newest
// records (ids, labelled with the value of its first text field). Best effort: a
// target the key may not list just offers nothing.
async function suggest(resource, list) {
  try {
    const def = await resourceDef(resource);
    const text = ((def && def.fields) || []).find((f) => f.type === 'string' || f.type === 'text');
    const r = await call('GET', `/v1/${encodeURIComponent(resource)}`, { query: { _limit: '50', _sort: '-created_at' } });
    for (const row of r.data.data || []) {
      const label = text && typeof row[text.name] === 'string' ? row[text.name] : row.id;
      list.append(h('option', { value: row.id, label }));
    }
  } catch { /* no suggestions */ }
}

function toLocalInput(iso) {
  const d = new Date(iso);
  if (isNaN(d)) return '';
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

// control is one field's labelled input, its hint and its error slot.
function control(f, value) {
  const id = uid('field');
  const hintId = `${id}-hint`;
  const errId = `${id}-error`;
  const has = value !== undefined && value !== null;
  let input;
  let extra = null;
  const common = { id, name: f.name, 'aria-describedby': `${hintId} ${errId}`, required: f.required, 'aria-required': f.required ? 'true' : null };
  const rule = (name) => (f.validations || []).find((v) => v.rule === name);
  switch (f.type) {
    case 'text':
      input = h('textarea', { ...common, rows: 3, value: has ? value : '' });
      break;
    case 'json':
      input = h('textarea', { ...common, rows: 3, class: 'mono', spellcheck: 'false', value: has ? JSON.stringify(value, null, 2) : '' });
      break;
    case 'boolean':
      input = h('select', common, h('option', { value: '', text: '(not set)' }),
        h('option', { value: 'true', text: 'true', selected: value === true }), h('option', { value: 'false', text: 'false', selected: value === false }));
      break;
    case 'enum':
      input = h('select', common, h('option', { value: '', text: '(not set)' }),
        [...(f.enumValues || []), ...(has && !(f.enumValues || []).includes(value) ? [value] : [])]
          .map((v) => h('option', { value: v, text: v, selected: value === v })));
      break;
    case 'integer':
    case 'number':
      input = h('input', { ...common, type: 'number', step: f.type === 'integer' ? '1' : 'any', inputmode: f.type === 'integer' ? 'numeric' : 'decimal',
        min: rule('min') ? rule('min').value : null, max: rule('max') ? rule('max').value : null, value: has ? String(value) : '' });
      break;
    case 'date':
      input = h('input', { ...common, type: 'date', value: has ? String(value).slice(0, 10) : '' });
      break;
    case 'datetime':
      input = h('input', { ...common, type: 'datetime-local', step: '1', value: has ? toLocalInput(value) : '' });
      break;
    case 'relation': {
      // Suggestions: the target's newest records, by id with a label.
      const listId = `${id}-options`;
      const list = h('datalist', { id: listId });
      input = h('input', { ...common, type: 'text', autocomplete: 'off', spellcheck: 'false', list: listId, value: has ? String(value) : '' });
      suggest(f.relation.resource, list);
      extra = list;
      break;
    }
    default:
      input = h('input', { ...common, type: rule('email') ? 'email' : 'text', autocomplete: 'off', spellcheck: 'false',
        maxlength: rule('maxLength') ? rule('maxLength').value : null, value: has ? String(value) : '' });
  }
  let touched = false;
  const touch = () => { touched = true; };
  input.addEventListener('input', touch);
  input.addEventListener('change', touch);
  const error = h('p', { id: errId, class: 'field-error', hidden: true });
  const node = h('div', { class: 'field' },
    h('label', { for: id }, f.name, f.required ? h('span', { class: 'req', text: ' (required)' }) : null),
    input,
    extra,
    h('p', { id: hintId, class: 'hint', text: hintFor(f) }),
    error);
  return {
    field: f,
    input,
    node,
    touched: () => touched,
    setError(msg) {
      error.textContent = msg || '';
      error.hidden = !msg;
      if (msg) input.setAttribute('aria-invalid', 'true'); else input.removeAttribute('aria-invalid');
    },
    // read is {present, value} or {error}: an empty input is absent on a
    // create, and null on an edit that emptied it.
    read() {
      const raw = input.value;
      if (f.type === 'number' || f.type === 'integer') {
        if (input.validity && input.validity.badInput) return { error: 'must be a number' };
      }
      if (raw === '') return { present: false, value: null };
      switch (f.type) {
        case 'integer':
        case 'number': return { present: true, value: Number(raw) };
        case 'boolean': return { present: true, value: raw === 'true' };
        case 'datetime': return { present: true, value: new Date(raw).toISOString() };
        case 'json':
          try { return { present: true, value: JSON.parse(raw) }; } catch (e) { return { error: `not valid JSON: ${e.message}` }; }
        default: return { present: true, value: raw };
      }
    },
  };
}

export async function detail(main, name, id) {
  const s = await schema();
  const def = (s.resources || []).find((r) => r.name === name);
  if (!def) { replace(main, h('h1', { text: 'Not found' }), h('p', { text: `No resource is named ${name}.` })); return undefined; }
  const base = `/v1/${encodeURIComponent(name)}/${encodeURIComponent(id)}`;
  const formBox = h('div');
  const recordBox = h('div');
  const historyBox = h('div');

  async function load() {
    let rec;
    try {
      rec = await call('GET', base);
    } catch (err) {
      // A deleted record still has its history (the audit API keeps it).
      replace(recordBox, err.status === 404 ? h('p', { class: 'muted', text: 'This record does not exist (any more). Its history follows.' }) : problemBox(err));
      return;
    }
    const row = rec.data;
    replace(recordBox,
      h('dl', { class: 'pairs' }, Object.keys(row).map((k) => [h('dt', { class: 'mono', text: k }), h('dd', { class: 'value', text: show(row[k]) })])),
      h('div', { class: 'row' },
        h('button', { type: 'button', text: 'Edit', onclick: () => {
          replace(formBox, recordForm(def, row, rec.headers.get('ETag'), {
            done() { replace(formBox); toast('Saved.'); load(); loadHistory(); },
            cancel() { replace(formBox); },
          }));
          formBox.querySelector('input, select, textarea, button')?.focus();
        } }),
        h('button', { type: 'button', class: 'danger', text: 'Delete', onclick: async () => {
          if (!window.confirm(`Delete ${name} record ${id}?`)) return;
          try { await call('DELETE', base); toast('Deleted.'); location.hash = `#/records/${encodeURIComponent(name)}`; } catch (err) { toast(err.message, 'error'); }
        } })));
  }

  // The history, newest first, a page at a time (before: the last id).
  const timeline = h('ol', { class: 'timeline' });
  async function loadHistory(before) {
    try {
      const r = await call('GET', `${base}/history`, { query: { limit: '50', before } });
      const evs = r.data.data || [];
      const next = r.data.meta && r.data.meta.next;
      if (!before) replace(timeline);
      timeline.append(...evs.map((ev) => h('li', {},
        h('div', { class: 'row' }, when(ev.createdAt), ' ',
          h('a', { href: `#/events/${encodeURIComponent(ev.eventId)}`, class: 'mono', text: ev.eventType }), ' ',
          h('span', { class: 'muted', text: `by ${who(ev)}` })),
        h('details', {}, h('summary', { text: changeSummary(ev) }), diffTable(ev)))));
      replace(historyBox, timeline.children.length ? timeline : h('p', { class: 'muted', text: 'No history.' }),
        next ? h('button', { type: 'button', class: 'secondary', text: 'Older events', onclick: () => loadHistory(next) }) : null);
    } catch (err) {
      replace(historyBox, problemBox(err, 'The history could not be read'));
    }
  }

  replace(main,
    h('h1', {}, h('a', { href: `#/records/${encodeURIComponent(name)}`, text: name }), ' ', short(id)),
    formBox, recordBox,
    h('h2', { text: 'History' }), historyBox);
  await Promise.all([load(), loadHistory()]);
  return undefined;
}

function changeSummary(ev) {
  const c = (ev.data && ev.data.changes) || {};
  const parts = [];
  if (c.updated && c.updated.length) parts.push(`changed ${c.updated.join(', ')}`);
  if (c.added && c.added.length && ev.data.old) parts.push(`added ${c.added.join(', ')}`);
  if (c.removed && c.removed.length && ev.data.new) parts.push(`removed ${c.removed.join(', ')}`);
  if (!ev.data || !ev.data.old) return 'created';
  if (!ev.data.new) return 'deleted';
  return parts.join('; ') || 'no field changed';
}
