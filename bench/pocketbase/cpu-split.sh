#!/bin/bash
# CPU per create at 1 client (issue 17): Herald (SQLite, events on) and PocketBase,
# wrk 5 s each, alternated twice; CPU from /proc/<pid>/stat (utime+stime, 10 ms ticks).
# Run from the project root: bash bench/pocketbase/cpu-split.sh. Needs wrk, jq, and the
# PocketBase binary that herald-vs-pocketbase.sh builds.
set -u
here=$(cd "$(dirname "$0")" && pwd)
w=$(mktemp -d)
pb=${PB_BIN:-$HOME/.cache/herald-bench/base}
[ -x "$pb" ] || { echo "build PocketBase first: bash bench/pocketbase/herald-vs-pocketbase.sh (or set PB_BIN)"; exit 1; }
(CGO_ENABLED=0 go build -o /tmp/herald-cpu-split .) || exit 1
$pb superuser upsert bench@example.com benchpass12345 --dir "$w/pb" >/dev/null 2>&1
$pb serve --http 127.0.0.1:8090 --dir "$w/pb" --dev=false >"$w/pb.log" 2>&1 & pbpid=$!
for _ in $(seq 50); do curl -sf http://127.0.0.1:8090/api/health >/dev/null && break; sleep 0.2; done
tok=$(curl -sf -X POST http://127.0.0.1:8090/api/collections/_superusers/auth-with-password -H 'Content-Type: application/json' -d '{"identity":"bench@example.com","password":"benchpass12345"}' | jq -r .token)
curl -sf -X POST http://127.0.0.1:8090/api/collections -H "Authorization: $tok" -H 'Content-Type: application/json' -d '{"name":"posts","type":"base","listRule":"","viewRule":"","createRule":"","updateRule":null,"deleteRule":null,"fields":[{"name":"title","type":"text"},{"name":"body","type":"text"},{"name":"views","type":"number"},{"name":"published","type":"bool"}]}' >/dev/null
cp $here/posts.yaml $w/herald.yaml
(cd $w && HERALD_ADDR=127.0.0.1:8091 HERALD_ADMIN_KEY=bench-admin-key-0123456789abcdef HERALD_SCHEMA=$w/herald.yaml exec /tmp/herald-cpu-split >$w/h.log 2>&1) & hpid=$!
for _ in $(seq 100); do curl -sf http://127.0.0.1:8091/readyz >/dev/null && break; sleep 0.2; done
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
run() { # pid lua url
  c0=$(cpu $1); out=$(wrk -t1 -c1 -d5s -s $2 $3 2>/dev/null); c1=$(cpu $1)
  n=$(echo "$out" | awk '/requests in/{print $1}'); rps=$(echo "$out" | awk '/Requests\/sec/{print int($2)}')
  awk -v c=$((c1-c0)) -v n=$n -v r=$rps -v name=$4 'BEGIN{printf "%s: %d req/s, %.3f ms CPU per request\n", name, r, c*10/n}'
}
for i in 1 2; do
  run $pbpid $here/pocketbase-post.lua http://127.0.0.1:8090/api/collections/posts/records PocketBase
  run $hpid $here/herald-post.lua http://127.0.0.1:8091/v1/posts Herald
done
kill $pbpid $hpid; rm -rf $w
