#!/bin/sh
# make demo: runs examples/orders on the embedded log and shows what happened.
set -e
BUILD=${BUILD:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
DATA=examples/orders/data
EDDY="$BUILD/eddy --data $DATA"
export LUA_PATH_5_4="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;;"
export LUA_CPATH_5_4="$ROOT/$BUILD/lib/?.so;;"

rm -rf "$DATA"
echo "\$ eddy topic create orders --partitions 4"
$EDDY topic create orders --partitions 4
echo
echo "\$ lua5.4 examples/orders/produce.lua   # 12 orders, keyed by customer"
lua5.4 examples/orders/produce.lua "$DATA" 12
echo
echo "\$ seq 1 1000 | eddy produce orders      # one message per line"
seq 1 1000 | $EDDY produce orders
echo
echo "\$ eddy topic list"
$EDDY topic list
echo
echo "\$ eddy tail orders --from-beginning --limit 4 --json"
$EDDY tail orders --from-beginning --limit 4 --json
echo
echo "The data is in $DATA/eddy.db; run 'make test' for the whole suite."
