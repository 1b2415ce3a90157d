#!/bin/sh
# Runs every test: the C unit tests, then the busted specs under Lua 5.4.
# SPECS="spec/a_spec.lua ..." runs only those spec files (make test SPECS=...).
# Ends with one line "N passed, N failed" counting both.  Exit status 0 only
# when nothing failed.
BUILD=${BUILD:-build}
LUA=${LUA:-lua5.4}
BUSTED=${BUSTED:-/usr/bin/busted}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1

log=$(mktemp)

# The Kafka specs run against a real broker (tools/kafka/kafka.sh), started
# here and stopped when the run ends.  If it cannot start, those specs fail:
# they need it.
echo "== Kafka broker"
kafka_log=$(mktemp)
if sh tools/kafka/kafka.sh up > "$kafka_log" 2>&1; then
  cat "$kafka_log"
  trap 'env -u LD_PRELOAD sh tools/kafka/kafka.sh down >/dev/null; rm -f "$log" "$kafka_log"' EXIT
else
  cat "$kafka_log"
  echo "the Kafka broker did not start: the Kafka specs will fail"
  trap 'rm -f "$log" "$kafka_log"' EXIT
fi
EDDY_TEST_BROKER=${EDDY_TEST_BROKER:-kafka://127.0.0.1:${EDDY_KAFKA_PORT:-9092}}
export EDDY_TEST_BROKER

if [ -n "$EDDY_ASAN" ]; then
  # The specs load the sanitized module into the stock interpreter.
  LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  export LD_PRELOAD ASAN_OPTIONS UBSAN_OPTIONS
fi

if [ -n "$EDDY_TSAN" ]; then
  # Races inside the libraries that are not instrumented are theirs to
  # find (test/tsan.supp).  Threads not joined at exit are not reported:
  # eddy leaves them on purpose when it exits at once (a second signal, a
  # handler call stuck in C).
  TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:exitcode=66:second_deadlock_stack=1:report_thread_leaks=0:suppressions=$ROOT/test/tsan.supp}
  export TSAN_OPTIONS
fi

# The build whose Lua module the specs load and whose C tests run (make
# test-tsan: the plain one; ThreadSanitizer loses track of its stack when
# Lua, not instrumented, longjmps out of an instrumented C function, and
# the C tests raise Lua errors by the thousand).
MODULE_BUILD=${MODULE_BUILD:-$BUILD}

echo "== C unit tests"
"$MODULE_BUILD/test-runner" | tee "$log"
c_line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
c_pass=${c_line%% passed*}
c_fail=${c_line#*, }; c_fail=${c_fail%% failed*}
if [ -z "$c_line" ]; then c_pass=0; c_fail=1; echo "C test runner did not finish"; fi

echo "== busted specs"
LUA_PATH_5_4="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;$ROOT/spec/?.lua;;" \
LUA_CPATH_5_4="$ROOT/$MODULE_BUILD/lib/?.so;;" \
EDDY_BIN="$ROOT/$BUILD/eddy" EDDY_BUILD="$ROOT/$BUILD" EDDY_ROOT="$ROOT" \
EDDY_MODULE_BUILD="$ROOT/$MODULE_BUILD" \
  "$LUA" "$BUSTED" --output=TAP ${SPECS:-spec} > "$log" 2>&1
busted_rc=$?
cat "$log"
b_pass=$(grep -cE '^ok [0-9]+' "$log")
b_fail=$(grep -cE '^not ok [0-9]+' "$log")
if [ "$busted_rc" -ne 0 ] && [ "$b_fail" -eq 0 ]; then
  echo "busted exited $busted_rc without a failing test: counted as a failure"
  b_fail=1
fi

pass=$((c_pass + b_pass))
fail=$((c_fail + b_fail))
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
