#!/bin/sh
# Runs the libFuzzer harnesses built in $FUZZ_BUILD (make fuzz).
#   sh fuzz/run.sh NAME...          each for $FUZZ_SECONDS; fails on a crash
#   sh fuzz/run.sh --merge NAME...  merges $FUZZ_BUILD/corpus/NAME into
#                                   fuzz/corpus/NAME, minimized
# A run starts from fuzz/corpus/NAME (committed: a minimized corpus, and as
# crash-WHAT every input that ever crashed) and $FUZZ_BUILD/corpus/NAME (what earlier runs found, where
# this run adds its finds).  fuzz/NAME.dict, when there, is its dictionary.
FUZZ_BUILD=${FUZZ_BUILD:-build-fuzz}
FUZZ_SECONDS=${FUZZ_SECONDS:-30}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1

merge=
if [ "$1" = "--merge" ]; then merge=1; shift; fi

# The sanitizers stop at the first report; leaks count as crashes.
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export ASAN_OPTIONS UBSAN_OPTIONS

failed=0
for name in "$@"; do
  bin="$FUZZ_BUILD/fuzz-$name"
  found="$FUZZ_BUILD/corpus/$name"
  seeds="fuzz/corpus/$name"
  mkdir -p "$found" "$seeds" "$FUZZ_BUILD/crashes"
  if [ -n "$merge" ]; then
    merged="$FUZZ_BUILD/merged-$name"
    rm -rf "$merged" && mkdir -p "$merged"
    if "$bin" -merge=1 "$merged" "$seeds" "$found" > "$FUZZ_BUILD/merge-$name.log" 2>&1; then
      # Inputs that once crashed keep their names (crash-WHAT).
      for f in "$seeds"/crash-*; do [ -f "$f" ] && cp "$f" "$merged/"; done
      rm -rf "$seeds" && mv "$merged" "$seeds"
      echo "fuzz $name: corpus of $(ls "$seeds" | wc -l) inputs"
    else
      echo "fuzz $name: merge failed, see $FUZZ_BUILD/merge-$name.log"
      failed=1
    fi
    continue
  fi
  dict=
  [ -f "fuzz/$name.dict" ] && dict="-dict=fuzz/$name.dict"
  # A harness that keeps a Lua state from one input to the next frees
  # what an input allocated only later: libFuzzer would take each such
  # input for a leak and scan the whole heap after it (up to 1000 times,
  # most of a short run).  LeakSanitizer still checks when the run ends.
  leaks=
  case "$name" in json|app) leaks="-detect_leaks=0" ;; esac
  log="$FUZZ_BUILD/$name.log"
  "$bin" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$FUZZ_BUILD/crashes/$name-" $dict $leaks \
    "$found" "$seeds" > "$log" 2>&1
  rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n 1)
  if [ "$rc" -eq 0 ]; then
    echo "fuzz $name: ${runs:-?} inputs in ${secs:-?} s, no crash ($(ls "$found" | wc -l) in its corpus)"
  else
    echo "fuzz $name: CRASH (exit $rc) after ${runs:-?} inputs; the input is in $FUZZ_BUILD/crashes/:"
    grep -E "ERROR|contract broken|SUMMARY|Test unit written" "$log" | head -n 5
    echo "  (whole log: $log)"
    failed=1
  fi
done
exit "$failed"
