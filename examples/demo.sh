#!/bin/sh
# make demo: runs examples/orders on the embedded log and shows what happened.
set -e
BUILD=${BUILD:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
EDDY="$ROOT/$BUILD/eddy"
export LUA_PATH_5_4="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;;"
export LUA_CPATH_5_4="$ROOT/$BUILD/lib/?.so;;"
cd "$ROOT/examples/orders"
rm -rf data

step() { printf '\n$ %s\n' "$*"; }

step "eddy topic create orders --partitions 4"
"$EDDY" topic create orders --partitions 4
step "lua5.4 produce.lua data 12        # 12 orders, keyed by customer"
lua5.4 produce.lua data 12
step "echo 'not json' | eddy produce orders --key ada"
echo 'not json' | "$EDDY" produce orders --key ada
step "eddy run --drain                  # handle everything, then exit"
"$EDDY" run --drain 2>&1 | sed 's/^[^ ]* /  /'
step "eddy state list order-counter     # orders per customer"
"$EDDY" state list order-counter
step "eddy tail orders.counted --from-beginning --limit 4"
"$EDDY" tail orders.counted --from-beginning --limit 4
step "eddy dlq list                     # quarantined: the order that was not JSON"
"$EDDY" dlq list
printf '\nThe store is examples/orders/data/eddy.db. Next: README.md, then make test.\n'
