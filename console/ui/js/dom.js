// DOM helpers. Everything the console shows is built with createElement
// and text nodes: record values, event payloads and receiver responses are
// untrusted, and nothing here ever parses a string as HTML.

// h builds an element. props: attributes, except `class`, `text`, `on*`
// (event listeners) and `dataset`; children: nodes, strings (as text),
// arrays of them, or null/false (skipped).
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = String(v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'value') el.value = v;
    else if (k === 'checked' || k === 'selected' || k === 'disabled' || k === 'hidden' || k === 'open') el[k] = Boolean(v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

// replace empties el and appends the children.
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// show renders value as text: strings as they are, the rest as JSON.
export function show(value) {
  if (value === undefined) return '';
  if (value === null) return 'null';
  if (typeof value === 'string') return value;
  return JSON.stringify(value);
}

// pretty is value as indented JSON, for <pre> blocks.
export function pretty(value) {
  return value === undefined ? '' : JSON.stringify(value, null, 2);
}

let toastTimer;
// toast announces a short message to everyone, screen readers included.
export function toast(message, kind = 'info') {
  const el = document.getElementById('toast');
  el.textContent = message;
  el.className = 'toast ' + kind;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.textContent = ''; el.className = ''; }, 5000);
}

let nextId = 0;
// uid makes an id for label/for and aria-describedby pairs.
export function uid(prefix = 'f') {
  nextId += 1;
  return `${prefix}-${nextId}`;
}

// when formats an RFC 3339 instant in the reader's locale, keeping the
// exact value in the title.
export function when(iso) {
  if (!iso) return h('span', { text: '—' });
  const d = new Date(iso);
  return h('time', { datetime: iso, title: iso, text: isNaN(d) ? iso : d.toLocaleString() });
}

// short cuts a long id to its head, keeping the whole in the title.
export function short(id) {
  const s = String(id ?? '');
  return h('span', { class: 'mono', title: s, text: s.length > 13 ? s.slice(0, 8) + '…' + s.slice(-4) : s });
}

// problemBox renders an error (an ApiError's problem document, or any
// Error) as an alert: title, detail, every listed error, and the request
// id to quote in a report.
export function problemBox(err, heading) {
  const p = err && err.problem ? err.problem : { title: 'Something went wrong', detail: String(err && err.message || err) };
  const status = err && err.status ? ` (${err.status})` : '';
  return h('div', { class: 'problem', role: 'alert' },
    h('p', { class: 'problem-title', text: (heading ? heading + ': ' : '') + (p.title || 'Error') + status }),
    p.detail ? h('p', { text: p.detail }) : null,
    Array.isArray(p.errors) && p.errors.length
      ? h('ul', {}, p.errors.map((e) => h('li', {},
        e.field ? h('code', { text: e.field }) : null, e.field ? ': ' : '', e.message || e.rule || '')))
      : null,
    p.requestId ? h('p', { class: 'muted' }, 'Request id ', h('code', { text: p.requestId })) : null);
}
