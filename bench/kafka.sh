#!/bin/sh
# make bench-kafka: eddy run --drain on Kafka with a no-op handler, dedupe on
# and off, over a backlog on the real broker, beside kcat consuming the same
# topic (kcat -C -e -q -o beginning).  Figures are msgs/s; ratios are
# eddy/kcat measured in this run.
set -e
BUILD=${BUILD:-build}
N=${BENCH_KAFKA_MESSAGES:-500000}
KEYS=${BENCH_KEYS:-10000}
RUNS=${BENCH_RUNS:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
EDDY="$ROOT/$BUILD/eddy"
BROKER=kafka://127.0.0.1:9092
TMP=$(mktemp -d)
started=
cleanup() {
  rm -rf "$TMP"
  if [ -n "$started" ]; then sh tools/kafka/kafka.sh down >/dev/null; fi
}
trap cleanup EXIT
if ! sh tools/kafka/kafka.sh status >/dev/null 2>&1; then
  sh tools/kafka/kafka.sh up
  started=1
fi

TOPIC=bench-$$-$(date +%s)
lua5.4 bench/gen.lua "$N" "$KEYS" > "$TMP/input"
"$EDDY" topic create "$TOPIC" --partitions 4 --broker "$BROKER" >/dev/null
"$EDDY" produce "$TOPIC" --key-separator : --broker "$BROKER" < "$TMP/input"
echo "backlog: $N messages on Kafka topic $TOPIC (4 partitions, $KEYS keys)"

now() { date +%s%N; }
rate() { echo $(( N * 1000000000 / ($2 - $1) )); }

run_kcat() {
  t0=$(now)
  got=$(kcat -b 127.0.0.1:9092 -C -t "$TOPIC" -e -q -o beginning -f '\n' | wc -l)
  t1=$(now)
  [ "$got" -eq "$N" ] || { echo "bench: kcat read $got of $N messages"; exit 1; }
  rate "$t0" "$t1"
}

# One eddy run --drain in a fresh group and data directory.
run_eddy() {
  handler=$1
  i=$2
  data="$TMP/data-$handler-$i"
  t0=$(now)
  EDDY_BENCH_BROKER=$BROKER EDDY_BENCH_TOPIC=$TOPIC EDDY_BENCH_GROUP="bench-$handler-$$-$i" \
  EDDY_BENCH_HANDLER="handlers/$handler.lua" \
    "$EDDY" run bench/kafka/eddy.lua --data "$data" --drain 2> "$TMP/log"
  t1=$(now)
  grep -q "handled=$N " "$TMP/log" || { echo "bench: $handler did not handle $N messages:"; tail -3 "$TMP/log"; exit 1; }
  rate "$t0" "$t1"
}

median() { sort -n | awk '{v[NR]=$1} END{print v[int((NR+1)/2)]}'; }
for i in $(seq "$RUNS"); do
  run_kcat >> "$TMP/kcat"
  run_eddy nodedupe "$i" >> "$TMP/off"
  run_eddy dedupe "$i" >> "$TMP/on"
done
k=$(median < "$TMP/kcat"); off=$(median < "$TMP/off"); on=$(median < "$TMP/on")
echo "medians of $RUNS runs each (eddy's time includes joining the group)"
printf "%-40s %12s %7s\n" "" "msgs/s" "ratio"
printf "%-40s %12s %7s\n" "kcat -C -e -q -o beginning" "$k" "1.000"
printf "%-40s %12s %7s\n" "eddy run, no-op handler, dedupe off" "$off" \
  "$(awk "BEGIN{printf \"%.3f\", $off/$k}")"
printf "%-40s %12s %7s\n" "eddy run, no-op handler, dedupe on" "$on" \
  "$(awk "BEGIN{printf \"%.3f\", $on/$k}")"
echo "targets: dedupe off >= 0.7 of kcat, dedupe on >= 0.4"
