#!/usr/bin/env bash
# Data and Train across a real two-node cluster on 127.0.0.1 (TAP): block tasks run on both
# nodes, a random shuffle, a sort and a groupby move blocks between the nodes' stores, and every
# row comes out exactly once; the Trainer runs one worker on each node (nn over the tcp ring,
# xgboost over rabit) and they end identical. Everything runs in a private LURAY_TMPDIR.
set -u
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh
L_TIMEOUT=120
LURAY_BIN=${LURAY_BIN:-build/bin/luray}
case $LURAY_BIN in /*) ;; *) LURAY_BIN=$PWD/$LURAY_BIN ;; esac
export LURAY_HISTORY=/dev/null
unset LURAY_ADDRESS LURAY_TOKEN_FILE

LURAY_TMPDIR=$(mktemp -d /tmp/luray-data-cluster.XXXXXX) || exit 1
export LURAY_TMPDIR
work=$LURAY_TMPDIR/work
mkdir -p "$work"

cleanup() {
    "$LURAY_BIN" stop >/dev/null 2>&1
    local p
    for p in $(node_pids) $(worker_pids); do kill -9 "$p" 2>/dev/null; done
    rm -rf "$LURAY_TMPDIR"
}
trap cleanup EXIT

out=$work/out
err=$work/err

port=$(free_port 3) # the head, its control port, one node
L start --head --port "$port" --num-cpus 1 --object-store-memory 200MB
check "the head starts" bash -c "[ $rc = 0 ]"
L start --address "127.0.0.1:$port" --num-cpus 1 --object-store-memory 200MB
check "a second node joins" bash -c "[ $rc = 0 ] && grep -q 'joined' '$out'"

cat >"$work/shuffle.lua" <<'EOF'
local data = require("luray.data")
local N = 40000
-- Each block records the node that made it; the blocks are then shuffled across both nodes.
local ds = data.range(N, {parallelism = 16})
    :map_batches(function(b)
        luray.sleep(0.05) -- long enough that one node's single CPU cannot take every block
        b.node = luray.get_runtime_context().node_id
        b.sq = b.id * b.id
        return b
    end)
    :materialize() -- every consumer below sees the same blocks, made where they were
    :random_shuffle{seed = 11}
local rows = ds:take_all()
assert(#rows == N, "rows after the shuffle: " .. #rows)
local seen, nodes, in_order = {}, {}, 0
for i, r in ipairs(rows) do
    assert(not seen[r.id], "row " .. r.id .. " twice")
    seen[r.id] = true
    assert(r.sq == r.id * r.id, "row " .. r.id .. " lost its column")
    nodes[r.node] = true
    if r.id == i - 1 then in_order = in_order + 1 end
end
local n_nodes = 0
for _ in pairs(nodes) do n_nodes = n_nodes + 1 end
assert(n_nodes == 2, "blocks ran on " .. n_nodes .. " node(s)")
assert(in_order < N / 10, "the shuffle left " .. in_order .. " rows in place")
-- A sort and a groupby over the shuffled blocks on both nodes.
local sorted = ds:sort("id", {descending = true}):take(5)
assert(sorted[1].id == N - 1 and sorted[5].id == N - 5, "sort across nodes")
local groups = ds:groupby("node"):count():take_all()
assert(#groups == 2 and groups[1]["count()"] + groups[2]["count()"] == N, "groupby across nodes")
print("shuffle ok " .. n_nodes)
EOF
L run "$work/shuffle.lua"
check "a shuffle, sort and groupby over blocks made on both nodes keep every row once" \
    bash -c "[ $rc = 0 ] && grep -q 'shuffle ok 2' '$out'"

cat >"$work/csv.lua" <<EOF
local data = require("luray.data")
local f = assert(io.open("$work/in.csv", "w"))
f:write("k,v\n")
for i = 1, 50000 do f:write(i % 7, ",", i * 0.5, "\n") end
f:close()
local ds = data.read_csv("$work/in.csv", {block_size = 64 * 1024})
    :map_batches(function(b)
        luray.sleep(0.05)
        b.node = luray.get_runtime_context().node_id
        return b
    end)
    :materialize()
assert(ds:count() == 50000, "count")
local files = ds:select_columns({"k", "v"}):write_csv("$work/outcsv")
local back = data.read_csv("$work/outcsv")
assert(back:count() == 50000, "read back")
assert(math.abs(back:sum("v") - 0.5 * 50000 * 50001 / 2) < 1e-6, "sum after the round trip")
local nodes = {}
for _, g in ipairs(ds:groupby("node"):count():take_all()) do nodes[#nodes + 1] = g.node end
print("csv ok " .. tostring(#files > 1) .. " " .. #nodes)
EOF
L run "$work/csv.lua"
check "a CSV read in byte ranges on both nodes and written back reads the same" \
    bash -c "[ $rc = 0 ] && grep -q 'csv ok true 2' '$out'"

cat >"$work/train.lua" <<'EOF'
local data = require("luray.data")
local train = require("luray.train")
local rows, s = {}, 5
local function rnd() s = (s * 1103515245 + 12345) % 2147483648 return s / 2147483648 * 2 - 1 end
for i = 1, 4000 do
    local a, b = rnd(), rnd()
    rows[i] = {x1 = a, x2 = b, label = (a + b > 0) and 1 or 0}
end
local ds = data.from_items(rows)
-- One worker per node (each has one CPU): gradients cross the nodes over the tcp ring.
local r = train.Trainer{
    framework = "nn",
    model = function()
        local nn = require("luray.nn")
        return nn.Sequential{nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2)}
    end,
    loss = "cross_entropy", optimizer = {name = "adam", lr = 0.05}, label_column = "label",
    epochs = 3, batch_size = 64, scaling = {num_workers = 2}, datasets = {train = ds},
}:fit()
local a, b = r.reports_by_rank[1], r.reports_by_rank[2]
assert(r.metrics.accuracy > 0.95, "accuracy " .. r.metrics.accuracy)
for e = 1, 3 do
    assert(a[e].metrics.weights_checksum == b[e].metrics.weights_checksum, "weights differ")
end
local x = train.Trainer{
    framework = "xgboost", params = {objective = "binary:logistic", max_depth = 3},
    num_boost_round = 10, label_column = "label", scaling = {num_workers = 2},
    datasets = {train = ds},
}:fit()
assert(x.reports_by_rank[1][1].metrics.model_checksum ==
    x.reports_by_rank[2][1].metrics.model_checksum, "boosters differ")
print("train ok " .. string.format("%.3f", r.metrics.accuracy))
EOF
L run "$work/train.lua"
check "nn and xgboost train with one worker on each node and end identical" \
    bash -c "[ $rc = 0 ] && grep -q 'train ok' '$out'"

cat >"$work/progress.lua" <<'EOF'
local data = require("luray.data")
local n = data.range(30, {parallelism = 30})
    :map_batches(function(b) luray.sleep(0.1) return b end)
    :count()
print("counted " .. n)
EOF
LURAY_DATA_PROGRESS=1 L run "$work/progress.lua"
check "a run longer than a second shows progress: rows/s, blocks read, ETA and the stage" \
    bash -c "[ $rc = 0 ] && grep -q 'counted 30' '$out' && grep -q 'rows/s' '$err' &&
        grep -q 'blocks read' '$err' && grep -q 'ETA' '$err' && grep -q 'MapBatches' '$err'"
L run "$work/progress.lua"
check "no progress line when stderr is not a terminal" \
    bash -c "[ $rc = 0 ] && ! grep -q 'rows/s' '$err'"

L stop
left=$(node_pids)
check "luray stop ends the cluster" bash -c "[ $rc = 0 ] && [ -z '$left' ]"

echo "1..$n"
[ "$failures" -eq 0 ]
