// The live event log: one admin stream per tab, opened at sign-in and
// kept while the console is open, whatever page is shown. Events are kept
// in sessionStorage with the last id seen, so a reload shows the log again
// and resumes the stream from that id (Last-Event-ID): nothing committed
// in between is missed.

import { openStream } from './sse.js';

const LOG = 'herald.live.log';
const LAST = 'herald.live.lastId';
const FILTER = 'herald.live.filter';
const KEEP = 300;

let events = load(LOG, []);
let filter = load(FILTER, { resources: '', types: '' });
let status = { state: 'stopped', detail: '' };
let unseen = 0;
let close = null;
const subscribers = new Set();

function load(key, fallback) {
  try { return JSON.parse(sessionStorage.getItem(key)) ?? fallback; } catch { return fallback; }
}

function save() {
  try {
    sessionStorage.setItem(LOG, JSON.stringify(events));
  } catch {
    events = events.slice(0, KEEP / 3); // storage full: keep the newest
  }
}

function notify(change) { subscribers.forEach((fn) => fn(change)); }

// start opens the stream (again, with the current filter).
export function start() {
  stop();
  close = openStream('/v1/_events/stream', {
    query: filter,
    lastId: () => sessionStorage.getItem(LAST),
    onStatus(state, detail = '') {
      status = { state, detail };
      notify({ status });
    },
    onFrame(frame) {
      if (frame.event === 'reset') {
        let info = {};
        try { info = JSON.parse(frame.data); } catch { /* keep {} */ }
        // The replay goes on after removedThrough: resume from there.
        if (info.removedThrough) sessionStorage.setItem(LAST, info.removedThrough);
        notify({ reset: info });
        return;
      }
      let ev;
      try { ev = JSON.parse(frame.data); } catch { return; }
      if (frame.id) sessionStorage.setItem(LAST, frame.id);
      if (events.some((e) => e.eventId === ev.eventId)) return;
      ev.receivedAt = new Date().toISOString();
      events.unshift(ev);
      if (events.length > KEEP) events.length = KEEP;
      unseen += 1;
      save();
      notify({ event: ev });
    },
  });
}

// stop closes the stream.
export function stop() {
  if (close) close();
  close = null;
  status = { state: 'stopped', detail: '' };
}

// subscribe calls fn on every change ({event}, {status} or {reset}); it
// returns the unsubscribe function.
export function subscribe(fn) {
  subscribers.add(fn);
  return () => subscribers.delete(fn);
}

export function log() { return events; }
export function currentStatus() { return status; }
export function currentFilter() { return { ...filter }; }
export function unseenCount() { return unseen; }
export function markSeen() {
  if (unseen === 0) return;
  unseen = 0;
  notify({ seen: true });
}

// setFilter restarts the stream with new filters (comma-separated
// resources and types; empty for all). The log kept so far stays, and the
// page shows only what matches.
export function setFilter(next) {
  filter = { resources: next.resources || '', types: next.types || '' };
  sessionStorage.setItem(FILTER, JSON.stringify(filter));
  start();
}

// clear empties the log shown; the stream goes on from the last id.
export function clear() {
  events = [];
  unseen = 0;
  save();
  notify({ cleared: true });
}

// matches tells whether an event passes the filter, as the server decides
// (a type is a full type or a bare op).
export function matches(ev, f = filter) {
  const list = (s) => s.split(',').map((x) => x.trim()).filter(Boolean);
  const rs = list(f.resources || '');
  const ts = list(f.types || '');
  if (rs.length && !rs.includes(ev.resourceName)) return false;
  if (ts.length) {
    const op = ev.eventType.slice(ev.eventType.lastIndexOf('.') + 1);
    if (!ts.includes(ev.eventType) && !ts.includes(op)) return false;
  }
  return true;
}
