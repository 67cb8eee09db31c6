// The console's only way to Herald: its public HTTP API, with the admin
// key as a bearer token. The key lives in sessionStorage (per tab, gone
// when the tab closes); it is never put in a URL or a cookie.

const KEY = 'herald.adminKey';

export const session = {
  key() { return sessionStorage.getItem(KEY); },
  signIn(key) { sessionStorage.setItem(KEY, key); },
  signOut() { sessionStorage.clear(); },
};

// ApiError is an answer other than 2xx or 304. problem is the RFC 9457
// document (or one made up from the status when the body was not one).
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

const listeners = new Set();
// onUnauthorized calls fn when any call is answered 401 (the key is no
// longer accepted).
export function onUnauthorized(fn) { listeners.add(fn); }

// call sends one request. body: an object (sent as JSON) or a string with
// contentType; query: an object or URLSearchParams (empty values left
// out); headers: extra headers. It resolves to {status, data, headers}
// and rejects with ApiError.
export async function call(method, path, { body, contentType, query, headers, key } = {}) {
  const url = new URL(path, location.origin);
  if (query instanceof URLSearchParams) {
    // Sent as built: an empty value can be meant (a filter on "").
    for (const [k, v] of query) url.searchParams.append(k, v);
  } else if (query) {
    for (const [k, v] of Object.entries(query)) {
      if (v !== undefined && v !== null && v !== '') url.searchParams.append(k, v);
    }
  }
  const h = { Accept: 'application/json', ...headers };
  const token = key ?? session.key();
  if (token) h.Authorization = `Bearer ${token}`;
  let payload;
  if (body !== undefined) {
    if (typeof body === 'string') {
      payload = body;
      h['Content-Type'] = contentType || 'application/json';
    } else {
      payload = JSON.stringify(body);
      h['Content-Type'] = 'application/json';
    }
  }
  let res;
  try {
    res = await fetch(url, { method, headers: h, body: payload, cache: 'no-store' });
  } catch (err) {
    throw new ApiError(0, { title: 'Herald cannot be reached', detail: String(err.message || err) });
  }
  const text = res.status === 204 ? '' : await res.text();
  let data = null;
  if (text && /json/.test(res.headers.get('Content-Type') || '')) {
    try { data = JSON.parse(text); } catch { data = null; }
  } else if (text) {
    data = text;
  }
  if (!res.ok && res.status !== 304) {
    const problem = data && typeof data === 'object' ? data : { title: res.statusText || `HTTP ${res.status}`, detail: text };
    const err = new ApiError(res.status, problem);
    // The session's key refused: sign out (once, not for a key being tried).
    if (res.status === 401 && !key && token) listeners.forEach((fn) => fn(err));
    throw err;
  }
  return { status: res.status, data, headers: res.headers };
}

let registry = null;
// schema is the applied schema (GET /v1/_registry), fetched once and kept
// until forget() (after an import).
export async function schema() {
  if (!registry) {
    registry = call('GET', '/v1/_registry').then((r) => r.data).catch((err) => { registry = null; throw err; });
  }
  return registry;
}
export function forget() { registry = null; }

// resourceDef is one resource of the applied schema, or undefined.
export async function resourceDef(name) {
  const s = await schema();
  return (s.resources || []).find((r) => r.name === name);
}
