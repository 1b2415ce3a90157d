#!/bin/sh
# make demo: runs examples/orders on the embedded log and shows what happened.
set -e
BUILD=${BUILD:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
EDDY="$ROOT/$BUILD/eddy"
export LUA_PATH_5_4="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;;"
export LUA_CPATH_5_4="$ROOT/${MODULE_BUILD:-$BUILD}/lib/?.so;;"
cd "$ROOT/examples/orders"
rm -rf data

step() { printf '\n$ %s\n' "$*"; }

step "eddy topic create orders --partitions 4"
"$EDDY" topic create orders --partitions 4
step "lua5.4 produce.lua data 12        # 12 orders (type OrderPlaced), keyed by customer"
lua5.4 produce.lua data 12
step "echo 'not json' | eddy produce orders --key ada"
echo 'not json' | "$EDDY" produce orders --key ada
step "eddy run --drain                  # handle everything, then exit"
# The log goes through sed, not to a terminal: ask for the text lines a
# terminal gets (JSON otherwise), and drop their times.
"$EDDY" run --drain --log-format text 2>&1 | sed 's/^[^ ]* /  /'
step "eddy state list order-counter     # orders per customer"
"$EDDY" state list order-counter
step "eddy tail orders.counted --from-beginning --limit 4"
"$EDDY" tail orders.counted --from-beginning --limit 4
step "eddy dlq list                     # quarantined: the order that was not JSON"
"$EDDY" dlq list
step "eddy saga list                    # each order's checkout"
"$EDDY" saga list
step "how each order ended, and why     # eddy saga list --json, summed up"
"$EDDY" saga list --json | lua5.4 -e '
local cjson = require "cjson"
local all = {}
for line in io.lines() do all[#all + 1] = cjson.decode(line) end
table.sort(all, function(a, b) return a.data.id < b.data.id end)
for _, s in ipairs(all) do
  local why = s.status == "completed" and "reserved, paid, shipped" or s.reason or s.failure or ""
  print(string.format("  order %-2d %-8s %-10s %-9s %-12s %s", s.data.id, s.data.customer,
                      s.data.sku, s.data.card, s.status, why))
end'
step "eddy tail notifications --from-beginning   # the choreography: notify followed the events"
"$EDDY" tail notifications --from-beginning
step "eddy flows                        # the app's flow, drawn from its scripts (mermaid)"
"$EDDY" flows
printf '\nThe store is examples/orders/data/eddy.db. Next: README.md, then make test.\n'
