// The schema: every resource with its fields, relations, permissions and
// classifications, and the import of a new schema with its plan shown
// (and destructive steps confirmed) before anything is applied.

import { h, replace, problemBox, show, toast, uid } from './dom.js';
import { call, forget, schema } from './api.js';

export async function view(main) {
  const s = await schema();
  const defs = s.resources || [];
  const perms = s.permissions || [];
  replace(main,
    h('h1', { text: 'Resources' }),
    defs.length ? null : h('p', { text: 'No resources are declared yet. Import a schema below.' }),
    h('div', { class: 'cards' }, defs.map((r) => resourceCard(r, perms.filter((p) => p.resource === r.name)))),
    importPanel());
}

function validationText(v) {
  return v.value === undefined ? v.rule : `${v.rule} ${show(v.value)}`;
}

function resourceCard(r, perms) {
  const headingId = uid('res');
  const classes = Object.entries(r.classifications || {});
  return h('section', { class: 'card', 'aria-labelledby': headingId },
    h('h2', { id: headingId }, r.name, ' ', h('a', { href: `#/records/${encodeURIComponent(r.name)}`, class: 'small', text: 'Records →' })),
    r.description ? h('p', { class: 'muted', text: r.description }) : null,
    r.softDelete ? h('p', { class: 'small', text: 'Soft delete: deleted records are kept, hidden.' }) : null,
    h('div', { class: 'scroll' }, h('table', {},
      h('caption', { class: 'sr-only', text: `Fields of ${r.name}` }),
      h('thead', {}, h('tr', {}, ['Field', 'Type', 'Flags', 'Default', 'Validations'].map((c) => h('th', { scope: 'col', text: c })))),
      h('tbody', {}, (r.fields || []).map((f) => h('tr', {},
        h('th', { scope: 'row', class: 'mono', text: f.name }),
        h('td', {}, f.type,
          f.type === 'relation' && f.relation ? h('span', { class: 'muted' }, ' → ', h('a', { href: `#/records/${encodeURIComponent(f.relation.resource)}`, text: f.relation.resource }), ` (on delete ${f.relation.onDelete || 'restrict'})`) : null,
          f.enumValues ? h('span', { class: 'muted', text: ` (${f.enumValues.join(', ')})` }) : null),
        h('td', { text: ['required', 'unique', 'sortable', 'filterable'].filter((k) => f[k]).join(', ') }),
        h('td', { class: 'mono', text: f.default === undefined ? '' : show(f.default) }),
        h('td', { text: (f.validations || []).map(validationText).join('; ') })))))),
    classes.length ? h('div', {},
      h('h3', { text: 'Classifications' }),
      h('dl', { class: 'pairs' }, classes.map(([name, expr]) => [h('dt', { class: 'mono', text: name }), h('dd', {}, h('code', { text: show(expr) }))]))) : null,
    h('h3', { text: 'Permissions' }),
    perms.length
      ? h('ul', { class: 'plain' }, perms.map((p) => h('li', {},
        h('strong', { text: p.role }), ` may ${p.action}`,
        p.fields ? ` (fields: ${p.fields.join(', ')})` : '',
        p.filters ? h('span', { class: 'muted', text: ` where ${p.filters.map(ruleText).join(' and ')}` }) : null,
        p.checks ? h('span', { class: 'muted', text: ` if ${p.checks.map(ruleText).join(' and ')}` }) : null)))
      : h('p', { class: 'muted', text: 'Admin only.' }));
}

function ruleText(r) {
  const rhs = r.claim ? `the token's ${r.claim}` : show(r.value);
  return `${r.field} ${r.operator} ${rhs}`;
}

function importPanel() {
  const areaId = uid('schema');
  const fileId = uid('file');
  const area = h('textarea', { id: areaId, rows: 14, spellcheck: 'false', class: 'mono', 'aria-describedby': `${areaId}-help` });
  const out = h('div', { 'aria-live': 'polite' });
  const file = h('input', { id: fileId, type: 'file', accept: '.yaml,.yml,.json,application/json,application/yaml', onchange: async () => {
    if (file.files[0]) { area.value = await file.files[0].text(); withdraw(); }
  } });
  const contentType = () => (area.value.trimStart().startsWith('{') ? 'application/json' : 'application/yaml');

  async function loadCurrent() {
    try {
      const r = await call('GET', '/v1/_registry', { headers: { Accept: 'application/yaml' } });
      area.value = r.data;
      withdraw();
    } catch (err) { replace(out, problemBox(err)); }
  }

  // What is applied is exactly what was previewed: any edit of the text
  // (or a file loaded) withdraws the plan.
  const withdraw = () => replace(out);
  area.addEventListener('input', withdraw);

  async function preview() {
    replace(out, h('p', { class: 'muted', text: 'Planning…' }));
    const body = area.value;
    const type = contentType();
    try {
      // The whole plan, destructive steps included, without applying it.
      const r = await call('POST', '/v1/_registry/import', { body, contentType: type, query: { dryRun: 'true', allowDestructive: 'true' } });
      if (area.value !== body) { withdraw(); return; }
      showPlan(r.data.changes || [], body, type);
    } catch (err) { replace(out, problemBox(err, 'The schema cannot be applied')); }
  }

  function showPlan(changes, body, type) {
    const destructive = changes.filter((c) => c.destructive);
    const confirmId = uid('confirm');
    const confirmBox = destructive.length ? h('input', { type: 'checkbox', id: confirmId }) : null;
    const apply = h('button', { type: 'button', class: destructive.length ? 'danger' : '', text: changes.length ? 'Apply this plan' : 'Nothing to apply', disabled: !changes.length, onclick: async () => {
      if (destructive.length && !confirmBox.checked) {
        toast('Tick the box to confirm the destructive steps first.', 'error');
        confirmBox.focus();
        return;
      }
      apply.disabled = true;
      try {
        const r = await call('POST', '/v1/_registry/import', { body, contentType: type,
          query: destructive.length ? { allowDestructive: 'true' } : {} });
        forget();
        toast(`Schema version ${r.data.version} applied (${(r.data.changes || []).length} changes).`);
        location.hash = '#/resources';
        window.dispatchEvent(new HashChangeEvent('hashchange'));
      } catch (err) {
        apply.disabled = false;
        replace(out, problemBox(err, 'Not applied'));
      }
    } });
    replace(out,
      h('h3', { text: changes.length ? `Plan: ${changes.length} change(s), ${destructive.length} destructive` : 'Plan: no changes' }),
      changes.length ? h('table', { class: 'plan' },
        h('thead', {}, h('tr', {}, ['Step', 'Resource', 'Field', 'Kind', 'Detail'].map((c) => h('th', { scope: 'col', text: c })))),
        h('tbody', {}, changes.map((c) => h('tr', { class: c.destructive ? 'destructive' : '' },
          h('td', { class: 'mono', text: c.op }), h('td', { text: c.resource || '' }), h('td', { text: c.field || '' }),
          h('td', { text: c.destructive ? 'destructive' : 'additive' }), h('td', { text: c.detail || '' }))))) : null,
      destructive.length ? h('p', { class: 'warn' }, confirmBox, ' ',
        h('label', { for: confirmId, text: `I understand: ${destructive.length} destructive step(s) drop or rewrite stored data.` })) : null,
      apply);
  }

  return h('section', { class: 'card import', 'aria-labelledby': 'import-heading' },
    h('h2', { id: 'import-heading', text: 'Import a schema' }),
    h('label', { for: areaId, text: 'Schema (YAML or JSON)' }),
    area,
    h('p', { id: `${areaId}-help`, class: 'muted', text: 'The whole schema: resources missing from it are dropped. The plan is shown first; nothing changes until you apply it.' }),
    h('div', { class: 'row' },
      h('label', { for: fileId, text: 'Or load a file' }), file,
      h('button', { type: 'button', class: 'secondary', text: 'Load the current schema', onclick: loadCurrent }),
      h('button', { type: 'button', text: 'Preview the plan', onclick: preview })),
    out);
}
