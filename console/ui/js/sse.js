// A Server-Sent Events client over fetch. EventSource cannot send an
// Authorization header, and the admin key must not go in a URL, so the
// console reads the stream itself: it sends the key as a bearer token and
// the last id seen as Last-Event-ID, parses the frames as the HTML
// standard says, and reconnects after the server's `retry` delay.

import { session } from './api.js';

// openStream connects to path (with query) and calls
// onFrame({id, event, data}) for each frame, onStatus(state, detail) as
// the connection changes ('connecting', 'open', 'retrying', 'stopped').
// lastId() is asked on every (re)connection. It returns a close function.
export function openStream(path, { query, lastId, onFrame, onStatus }) {
  let closed = false;
  let controller;
  let retry = 2000;
  let timer;

  async function connect() {
    if (closed) return;
    controller = new AbortController();
    const url = new URL(path, location.origin);
    for (const [k, v] of Object.entries(query || {})) if (v) url.searchParams.set(k, v);
    const headers = { Accept: 'text/event-stream', Authorization: `Bearer ${session.key()}` };
    const last = lastId();
    if (last) headers['Last-Event-ID'] = last;
    onStatus('connecting');
    let res;
    try {
      res = await fetch(url, { headers, signal: controller.signal, cache: 'no-store' });
    } catch (err) {
      return again(String(err.message || err));
    }
    if (!res.ok) {
      let detail = `HTTP ${res.status}`;
      try { const p = await res.json(); detail = p.detail || p.title || detail; } catch { /* not a problem document */ }
      if (res.status === 429 || res.status >= 500) return again(detail);
      onStatus('stopped', detail);
      return undefined;
    }
    onStatus('open');
    try {
      await read(res.body);
    } catch (err) {
      if (closed) return undefined;
      return again(String(err.message || err));
    }
    return again('the stream ended');
  }

  function again(detail) {
    if (closed) return;
    onStatus('retrying', detail);
    timer = setTimeout(connect, retry);
  }

  // The server sends a keep-alive every 15 s: a stream silent for 45 s is
  // a dead connection (a laptop that slept), so it is dropped and resumed.
  const IDLE = 45000;

  async function read(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    let frame = { data: [], event: '', id: null };
    let idle;
    const watch = () => {
      clearTimeout(idle);
      idle = setTimeout(() => controller.abort(), IDLE);
    };
    for (;;) {
      watch();
      let chunk;
      try {
        chunk = await reader.read();
      } finally {
        clearTimeout(idle);
      }
      const { value, done } = chunk;
      if (done) return;
      buf += value;
      let nl;
      while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + (buf[nl] === '\r' && buf[nl + 1] === '\n' ? 2 : 1));
        if (line === '') {
          if (frame.data.length) onFrame({ id: frame.id, event: frame.event || 'message', data: frame.data.join('\n') });
          frame = { data: [], event: '', id: null };
          continue;
        }
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let val = colon < 0 ? '' : line.slice(colon + 1);
        if (val.startsWith(' ')) val = val.slice(1);
        if (field === 'data') frame.data.push(val);
        else if (field === 'event') frame.event = val;
        else if (field === 'id') frame.id = val;
        else if (field === 'retry' && /^\d+$/.test(val)) retry = Number(val);
      }
    }
  }

  connect();
  return () => {
    closed = true;
    clearTimeout(timer);
    if (controller) controller.abort();
  };
}
