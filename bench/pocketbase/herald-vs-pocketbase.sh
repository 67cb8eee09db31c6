#!/bin/bash
# Run from the project root: bash bench/pocketbase/herald-vs-pocketbase.sh [create|read]
# create (the default): creates over HTTP with events on, Herald (SQLite, then PostgreSQL)
# beside PocketBase, alternating 5 s wrk runs at 1, 8 and 32 clients, medians of 3.
# read: reads of one record (GET by id) at 8 and 32 clients, in a Herald process that
# created its tables at start-up (a new database, as a first `go run .` meets it).
# Holds when Herald's median is >= 1.5x PocketBase's at every point (exit 0), else exit 1.
# Takes about 5 minutes.
# Needs wrk and jq (apt-get install wrk jq); builds PocketBase v0.36.8 from the Go module proxy
# into ~/.cache/herald-bench unless PB_BIN names a PocketBase binary. Run it from the project root.
set -u
op=${1:-create}
case $op in create|read) ;; *) echo "usage: $0 [create|read]"; exit 2;; esac
src=$PWD
here=$(cd "$(dirname "$0")" && pwd)
command -v wrk >/dev/null || { echo "wrk missing (apt-get install wrk)"; exit 1; }
w=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; rm -rf "$w"' EXIT
pb=${PB_BIN:-/nonexistent}
if [ ! -x "$pb" ]; then
  pb=$HOME/.cache/herald-bench/base
  [ -x "$pb" ] || (mkdir -p "$(dirname "$pb")" && cd "$w" && CGO_ENABLED=0 GOBIN="$(dirname "$pb")" \
    go install github.com/pocketbase/pocketbase/examples/base@v0.36.8 >/dev/null 2>&1) || { echo "cannot build PocketBase"; exit 1; }
fi
# PocketBase on :8090 with the posts collection
$pb superuser upsert bench@example.com benchpass12345 --dir "$w/pb" >/dev/null 2>&1
$pb serve --http 127.0.0.1:8090 --dir "$w/pb" --dev=false >"$w/pb.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do curl -sf http://127.0.0.1:8090/api/health >/dev/null && break; sleep 0.2; done
tok=$(curl -sf -X POST http://127.0.0.1:8090/api/collections/_superusers/auth-with-password \
  -H 'Content-Type: application/json' -d '{"identity":"bench@example.com","password":"benchpass12345"}' | jq -r .token)
curl -sf -X POST http://127.0.0.1:8090/api/collections -H "Authorization: $tok" -H 'Content-Type: application/json' -d '{
  "name":"posts","type":"base","listRule":"","viewRule":"","createRule":"","updateRule":null,"deleteRule":null,
  "fields":[{"name":"title","type":"text"},{"name":"body","type":"text"},{"name":"views","type":"number"},{"name":"published","type":"bool"}]}' >/dev/null \
  || { echo "PocketBase setup failed"; exit 1; }
(cd "$src" && CGO_ENABLED=0 go build -o "$w/herald" .) || { echo "herald does not build"; exit 1; }
cp "$here/posts.yaml" "$w/herald.yaml"
rps() { wrk -t"$(( $1 < 2 ? 1 : 2 ))" -c"$1" -d5s --timeout 2s -s "$2" "$3" 2>/dev/null | awk '/Requests\/sec/{print int($2)}'; }
median() { printf '%s\n' "$@" | sort -n | sed -n 2p; }
fail=0; out=""
for db in sqlite postgres; do
  url=""
  if [ $db = postgres ]; then
    psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS bars_write_path WITH (FORCE)" -qc "CREATE DATABASE bars_write_path" >/dev/null 2>&1 \
      || { out="$out postgres:unavailable"; fail=1; continue; }
    url="postgres://postgres@127.0.0.1:5432/bars_write_path?sslmode=disable"
  fi
  (cd "$w" && rm -f herald.db* && exec env HERALD_ADDR=127.0.0.1:8091 HERALD_ADMIN_KEY=bench-admin-key-0123456789abcdef \
     HERALD_SCHEMA="$w/herald.yaml" ${url:+HERALD_DATABASE_URL=$url} ./herald >"$w/herald-$db.log" 2>&1) &
  hp=$!; pids+=($hp)
  for _ in $(seq 100); do curl -sf http://127.0.0.1:8091/readyz >/dev/null && break; sleep 0.2; done
  clients="1 8 32"; pbs=$here/pocketbase-post.lua; hs=$here/herald-post.lua
  pbu=http://127.0.0.1:8090/api/collections/posts/records; hu=http://127.0.0.1:8091/v1/posts
  if [ $op = read ]; then
    # One record on each side, read by id: PocketBase's viewRule is public, Herald's GET
    # carries the admin key (herald-get.lua), as its create does.
    clients="8 32"; pbs=$here/pocketbase-get.lua; hs=$here/herald-get.lua
    pbu=$pbu/$(curl -sf -X POST $pbu -H 'Content-Type: application/json' \
      -d '{"title":"hello world","body":"a small body","views":42,"published":true}' | jq -r .id)
    hu=$hu/$(curl -sf -X POST $hu -H 'Content-Type: application/json' -H 'Authorization: Bearer bench-admin-key-0123456789abcdef' \
      -d '{"title":"hello world","body":"a small body","views":42,"published":true}' | jq -r .id)
  fi
  for c in $clients; do
    [ $db = postgres ] && [ $c = 1 ] && continue
    P=(); H=()
    for r in 1 2 3; do
      P+=("$(rps $c "$pbs" "$pbu")")
      H+=("$(rps $c "$hs" "$hu")")
    done
    p=$(median "${P[@]}"); h=$(median "${H[@]}")
    ratio=$(awk -v h="$h" -v p="$p" 'BEGIN{ if (p>0) printf "%.2f", h/p; else print 0 }')
    out="$out $db/c$c:${ratio}x($h/$p)"
    awk -v r="$ratio" 'BEGIN{ exit !(r < 1.5) }' && fail=1
  done
  kill $hp 2>/dev/null; wait $hp 2>/dev/null
done
echo "Herald/PocketBase ${op}s (target >= 1.5x):$out"
exit $fail
