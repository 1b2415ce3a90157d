#!/bin/sh
# make bench: eddy run --drain over a pre-produced backlog, beside the same
# handler in a bare Lua loop.  Figures are msgs/s; ratios are eddy/reference
# measured in this run.
set -e
BUILD=${BUILD:-build}
N=${BENCH_MESSAGES:-200000}
KEYS=${BENCH_KEYS:-10000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
EDDY="$ROOT/$BUILD/eddy"
export LUA_PATH_5_4="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;;"
export LUA_CPATH_5_4="$ROOT/$BUILD/lib/?.so;;"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

lua5.4 bench/gen.lua "$N" "$KEYS" > "$TMP/input"
echo "backlog: $N messages, $(head -c 100000 "$TMP/input" | awk -F'{' 'NR<100{s+=length($0)-length($1)} END{printf "%d", s/99}')-byte JSON values, $KEYS keys, 4 partitions"

now() { date +%s%N; }

# One eddy run --drain over a fresh copy of the backlog; prints msgs/s.
# Further arguments go to eddy produce (--type for (d)).
run_eddy() {
  app=$1
  shift
  data="$TMP/data-$(basename "$app")"
  rm -rf "$data"
  "$EDDY" --data "$data" topic create orders --partitions 4 >/dev/null
  "$EDDY" --data "$data" produce orders --key-separator : "$@" < "$TMP/input"
  t0=$(now)
  "$EDDY" run "bench/$app/eddy.lua" --data "$data" --drain 2> "$TMP/log-$app"
  t1=$(now)
  grep -q "handled=$N " "$TMP/log-$app" || { echo "bench: $app did not handle $N messages:"; tail -3 "$TMP/log-$app"; exit 1; }
  echo $(( N * 1000000000 / (t1 - t0) ))
}

RUNS=${BENCH_RUNS:-3}
median() { sort -n | awk '{v[NR]=$1} END{print v[int((NR+1)/2)]}'; }
# Reference and eddy runs alternate, so a slow spell of the machine hits both.
for i in $(seq "$RUNS"); do
  lua5.4 bench/reference.lua bench/noop/handlers/noop.lua "$TMP/input" >> "$TMP/ref_noop"
  run_eddy noop >> "$TMP/eddy_noop"
  lua5.4 bench/reference.lua bench/work/handlers/work.lua "$TMP/input" >> "$TMP/ref_work"
  run_eddy work >> "$TMP/eddy_work"
  run_eddy contracts --type Order --version 1 >> "$TMP/eddy_contracts"
done
ref_noop=$(median < "$TMP/ref_noop"); a=$(median < "$TMP/eddy_noop")
ref_work=$(median < "$TMP/ref_work"); b=$(median < "$TMP/eddy_work")
echo "medians of $RUNS runs each"
printf "%-48s %12s %14s %7s\n" "" "eddy msgs/s" "bare Lua msgs/s" "ratio"
printf "%-48s %12s %14s %7s\n" "(a) no-op handler, dedupe on" "$a" "$ref_noop" \
  "$(awk "BEGIN{printf \"%.3f\", $a/$ref_noop}")"
printf "%-48s %12s %14s %7s\n" "(b) JSON + state get/set + one emit" "$b" "$ref_work" \
  "$(awk "BEGIN{printf \"%.3f\", $b/$ref_work}")"
d=$(median < "$TMP/eddy_contracts")
printf "%-48s %12s %14s %7s\n" "(d) (b) with both event types declared" "$d" "$b (b)" \
  "$(awk "BEGIN{printf \"%.3f\", $d/$b}")"
echo "targets: (a) >= 400000 msgs/s, (b) >= 120000 msgs/s"

# (c) The pause a reload causes, under load: 20 reloads while eddy run works
# through a backlog (bench/reload.lua says how it is measured).
RELOAD_N=${BENCH_RELOAD_MESSAGES:-1000000}
lua5.4 bench/gen.lua "$RELOAD_N" "$KEYS" > "$TMP/input-reload"
cp -r bench/reload "$TMP/reload-app"
set -- $(lua5.4 bench/reload.lua "$EDDY" "$TMP/reload-app" "$TMP/data-reload" "$TMP/input-reload" 20)
[ -n "$5" ] || { echo "bench: (c) did not finish"; exit 1; }
echo "(c) reload pause under load ($RELOAD_N-message backlog): the largest gap between handled messages, ms"
printf "    around each of %d reloads: p50 %s, p99 %s; between reloads (no reload): p50 %s, p99 %s\n" \
  "$1" "$2" "$3" "$4" "$5"
echo "    target: p99 around reloads < 50 ms"

