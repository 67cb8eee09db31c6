// A real EventSource client for realtime/eventsource_test.go: it follows a
// stream (with ?access_token=, as browsers must) and prints one JSON line
// per event and per (re)connection. EventSource reconnects by itself after
// a dropped connection, sending Last-Event-ID.
import { EventSource } from 'eventsource';

const [base, token, want] = process.argv.slice(2);
const es = new EventSource(`${base}/v1/notes/stream?access_token=${encodeURIComponent(token)}`);
let n = 0;
es.onopen = () => console.log(JSON.stringify({ open: true }));
es.onerror = () => console.log(JSON.stringify({ error: true }));
es.addEventListener('notes.created', (e) => {
  console.log(JSON.stringify({ id: e.lastEventId, type: e.type, resourceId: JSON.parse(e.data).resourceId }));
  if (++n >= Number(want)) {
    es.close();
    process.exit(0);
  }
});
setTimeout(() => {
  console.log(JSON.stringify({ timeout: true }));
  process.exit(2);
}, 60000);
