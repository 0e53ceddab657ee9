#!/usr/bin/env bash
# A real three-node cluster on 127.0.0.1 (TAP): a head and two nodes with their own ports and
# stores; SPREAD, node affinity, placement groups, objects moving between nodes, named actors,
# actors taking the place of ones just killed on other nodes, a node killed mid-job, a node with
# the wrong key, random bytes at the head's port, and `luray stop` leaving nothing behind.
# Everything runs in a private LURAY_TMPDIR.
set -u
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh
L_TIMEOUT=90
LURAY_BIN=${LURAY_BIN:-build/bin/luray}
case $LURAY_BIN in /*) ;; *) LURAY_BIN=$PWD/$LURAY_BIN ;; esac
export LURAY_HISTORY=/dev/null
unset LURAY_ADDRESS LURAY_TOKEN_FILE

LURAY_TMPDIR=$(mktemp -d /tmp/luray-cluster.XXXXXX) || exit 1
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
# lua NAME: runs $work/NAME.lua as a driver on the head's node.
lua() {
    L run "$work/$1.lua"
}

port=$(free_port 4) # the head, its control port, two nodes
head=127.0.0.1:$port
store=200MB

L start --head --port "$port" --num-cpus 1 --object-store-memory "$store"
check "the head starts and prints where its token is" bash -c "[ $rc = 0 ] &&
    grep -q 'cluster token:  *$LURAY_TMPDIR/cluster-$port/token' '$out'"
check "the token file is private (mode 600)" \
    bash -c "[ \"\$(stat -c %a '$LURAY_TMPDIR/cluster-$port/token')\" = 600 ]"
L start --address "$head" --num-cpus 1 --object-store-memory "$store" --resources '{"side": 1}'
check "a node joins" bash -c "[ $rc = 0 ] && grep -q 'joined the cluster at $head' '$out'"
L start --address "$head" --num-cpus 1 --object-store-memory "$store"
check "a second node joins on its own port" bash -c "[ $rc = 0 ] && grep -q 'joined' '$out'"

L status --json
cp "$out" "$work/status.json"
check "status lists three alive nodes with their resources" python3 - "$work/status.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
alive = [n for n in s["nodes"] if n["alive"]]
assert len(alive) == 3, s
assert s["resources"]["CPU"] == 3 and s["resources"]["side"] == 1, s["resources"]
assert len({n["address"] for n in alive}) == 3
EOF

mkdir -p "$work/elsewhere"
cp "$LURAY_TMPDIR/cluster-$port/token" "$work/copied.token"
chmod 600 "$work/copied.token"
LURAY_TMPDIR=$work/elsewhere L status --address "$head" --token-file "$work/copied.token" --json
check "status from a machine without a node asks the head's control port with the token" \
    python3 -c "import json,sys; s=json.load(open(sys.argv[1])); sys.exit(0 if s['alive_nodes'] == 3 else 1)" "$out"

# ---- SPREAD, node affinity, custom resources

cat >"$work/spread.lua" <<'EOF'
local where = luray.remote({scheduling_strategy = "SPREAD"}, function()
    return luray.get_runtime_context().node_id
end)
local refs = {}
for i = 1, 30 do refs[i] = where:remote() end
local seen, n = {}, 0
for _, id in ipairs(luray.get(refs)) do
    if not seen[id] then n = n + 1 end
    seen[id] = (seen[id] or 0) + 1
end
assert(n == 3, "SPREAD reached " .. n .. " nodes")
for id, c in pairs(seen) do assert(c >= 5, id .. " ran only " .. c .. " of 30") end
print("spread ok")
EOF
lua spread
check "SPREAD reaches every node" bash -c "[ $rc = 0 ] && grep -q 'spread ok' '$out'"

cat >"$work/affinity.lua" <<'EOF'
local ids = {}
for _, nd in ipairs(luray.nodes()) do if nd.alive then ids[#ids + 1] = nd.node_id end end
assert(#ids == 3)
local where = luray.remote(function() return luray.get_runtime_context().node_id end)
for _, id in ipairs(ids) do
    for _ = 1, 3 do
        local got = luray.get(where:options{scheduling_strategy = {node_id = id}}:remote())
        assert(got == id, "asked for " .. id .. ", ran on " .. got)
    end
end
-- soft affinity to a node that does not exist runs anywhere; hard affinity fails clearly
local any = luray.get(where:options{scheduling_strategy = {node_id = "0badf00d", soft = true}}:remote())
assert(any)
local ok, e = pcall(luray.get, where:options{scheduling_strategy = {node_id = "0badf00d"}}:remote())
assert(not ok and e.type == "TaskUnschedulableError" and tostring(e):find("0badf00d"), tostring(e))
-- a custom resource only one node has
local side = luray.get(where:options{resources = {side = 1}}:remote())
local owner
for _, nd in ipairs(luray.nodes()) do if nd.resources.side then owner = nd.node_id end end
assert(side == owner, "side ran on " .. side .. " not " .. tostring(owner))
-- resources no node has: a clear error, not a wait
ok, e = pcall(luray.get, where:options{resources = {nowhere = 1}}:remote())
assert(not ok and e.type == "TaskUnschedulableError" and tostring(e):find("nowhere"), tostring(e))
ok, e = pcall(luray.get, where:options{num_cpus = 4}:remote())
assert(not ok and e.type == "TaskUnschedulableError", tostring(e))
print("affinity ok")
EOF
lua affinity
check "node affinity, custom resources and impossible requests" \
    bash -c "[ $rc = 0 ] && grep -q 'affinity ok' '$out'"

# ---- placement groups

cat >"$work/pg.lua" <<'EOF'
local where = luray.remote({num_cpus = 0.5}, function() return luray.get_runtime_context().node_id end)
local function run_in(pg, i)
    return luray.get(where:options{scheduling_strategy = {placement_group = pg, bundle_index = i}}:remote())
end
local spread = luray.placement_group({{CPU = 1}, {CPU = 1}, {CPU = 1}}, "STRICT_SPREAD")
assert(luray.get(spread:ready(), {timeout = 20}) == true)
local seen = {}
for i = 1, 3 do seen[run_in(spread, i)] = true end
local count = 0
for _ in pairs(seen) do count = count + 1 end
assert(count == 3, "STRICT_SPREAD used " .. count .. " nodes")
assert(luray.available_resources().CPU == 0, "the bundles hold every CPU")
luray.remove_placement_group(spread)
luray.sleep(1.5) -- the next heartbeats carry the freed CPUs
assert(luray.available_resources().CPU == 3, "removing the group frees its CPUs")
local pack = luray.placement_group({{CPU = 0.5}, {CPU = 0.5}}, "STRICT_PACK")
luray.get(pack:ready(), {timeout = 20})
assert(run_in(pack, 1) == run_in(pack, 2), "STRICT_PACK bundles on one node")
local ok, e = pcall(luray.get, where:options{num_cpus = 1,
    scheduling_strategy = {placement_group = pack, bundle_index = 1}}:remote())
assert(not ok and e.type == "TaskUnschedulableError" and tostring(e):find("bundle"), tostring(e))
luray.remove_placement_group(pack)
local never = luray.placement_group({{CPU = 2}}, "PACK")
ok, e = pcall(luray.get, never:ready(), {timeout = 20})
assert(not ok and e.type == "PlacementGroupError", tostring(e))
print("pg ok")
EOF
lua pg
check "placement groups place where they say" bash -c "[ $rc = 0 ] && grep -q 'pg ok' '$out'"

# ---- objects between nodes

cat >"$work/objects.lua" <<'EOF'
local ids = {}
for _, nd in ipairs(luray.nodes()) do if nd.alive and not nd.is_head then ids[#ids + 1] = nd.node_id end end
table.sort(ids)
local A, B = ids[1], ids[2]
local make = luray.remote({scheduling_strategy = {node_id = A}}, function(n)
    local t = luray.zeros({n}, "int64")
    for i = 1, n, 1000 do t:set(i, i) end
    return t, luray.get_runtime_context().node_id
end)
make = make:options{num_returns = 2}
local sum = luray.remote({scheduling_strategy = {node_id = B}}, function(t)
    local s = 0
    for i = 1, #t, 1000 do s = s + t:get(i) end
    return s, #t, luray.get_runtime_context().node_id
end):options{num_returns = 3}
local n = 10 * 1000 * 1000 -- 80 MB
local t, made_on = make:remote(n)
assert(luray.get(made_on) == A)
local s, len, used_on = sum:remote(t)
local expect = 0
for i = 1, n, 1000 do expect = expect + i end
assert(luray.get(s) == expect and luray.get(len) == n and luray.get(used_on) == B)
-- the driver on the head pulls it too, and several tasks on B share one transfer
local here = luray.get(t)
assert(#here == n and here:get(1001) == 1001)
local refs = {}
for i = 1, 4 do refs[i] = select(2, sum:remote(t)) end
for _, r in ipairs(luray.get(refs)) do assert(r == n) end
-- a put on the head read by a task on a node, refs inside values, and errors crossing nodes
local big = luray.put(string.rep("abc", 400000))
local echo = luray.remote({scheduling_strategy = {node_id = A}}, function(x) return #luray.get(x[1]) end)
assert(luray.get(echo:remote({big})) == 1200000)
local boom = luray.remote({scheduling_strategy = {node_id = B}}, function() error("kaboom") end)
local ok, e = pcall(luray.get, boom:remote())
assert(not ok and e.type == "TaskError" and tostring(e):find("kaboom"), tostring(e))
print("objects ok")
EOF
lua objects
check "a large object moves between nodes, and values and errors cross nodes" \
    bash -c "[ $rc = 0 ] && grep -q 'objects ok' '$out'"

# ---- named actors on another node

cat >"$work/actor.lua" <<'EOF'
local ids = {}
for _, nd in ipairs(luray.nodes()) do if nd.alive and not nd.is_head then ids[#ids + 1] = nd.node_id end end
table.sort(ids)
local Counter = luray.actor({
    init = function(self) self.n = 0 end,
    add = function(self, k) self.n = self.n + k return self.n end,
    where = function(self) return luray.get_runtime_context().node_id end,
})
local c = Counter:options{name = "counter", scheduling_strategy = {node_id = ids[2]}}:remote()
local total, node
for i = 1, 10 do total = luray.get(c.add:remote(i)) end
assert(total == 55)
local same = luray.get_actor("counter")
assert(luray.get(same.add:remote(1)) == 56 and luray.get(same.where:remote()) == ids[2])
-- a task on the other node calls it through its handle
local call = luray.remote({scheduling_strategy = {node_id = ids[1]}}, function(h) return luray.get(h.add:remote(100)) end)
assert(luray.get(call:remote(c)) == 156)
print("actor ok")
EOF
lua actor
check "an actor on another node: calls, get_actor and handles passed on" \
    bash -c "[ $rc = 0 ] && grep -q 'actor ok' '$out'"

# ---- actors killed on other nodes: the next ones go there, not wait behind the head's

cat >"$work/refill.lua" <<'EOF'
local Echo = luray.actor({ where = function(self) return luray.get_runtime_context().node_id end })
local function round(k, hold)
    local hs, refs = {}, {}
    for i = 1, 3 do
        hs[i] = Echo:options{num_cpus = 1}:remote()
        refs[i] = hs[i].where:remote()
    end
    local ok, got = pcall(luray.get, refs, {timeout = 10})
    assert(ok, "round " .. k .. ": " .. tostring(got))
    assert(got[1] ~= got[2] and got[2] ~= got[3] and got[1] ~= got[3],
        "round " .. k .. " ran on " .. table.concat(got, " "))
    luray.sleep(hold) -- heartbeats tell the head the other nodes are full
    for _, h in ipairs(hs) do luray.kill(h) end
end
round(1, 1.2)
-- At once, before the next heartbeats: the head sees no room on the other nodes, so the second
-- and third actors wait on the head, whose CPU the first holds for good, until they ask again.
round(2, 0)
print("refill ok")
EOF
lua refill
check "actors killed on other nodes: the next ones take their place there" \
    bash -c "[ $rc = 0 ] && grep -q 'refill ok' '$out'"

# ---- runtime_env.working_dir: the driver's own modules on every node

mkdir -p "$work/proj/lib"
cat >"$work/proj/helper.lua" <<'EOF'
return { twice = function(x) return 2 * x end, data = io.open("data.txt"):read("a") }
EOF
echo "from the working dir" >"$work/proj/data.txt"
cat >"$work/proj/wd.lua" <<'EOF'
luray.init{runtime_env = {working_dir = arg[1], env_vars = {PROJ_MODE = "test"}}}
local f = luray.remote({scheduling_strategy = "SPREAD"}, function(x)
    local h = require("helper")
    return h.twice(x), h.data, os.getenv("PROJ_MODE"), luray.get_runtime_context().node_id
end):options{num_returns = 4}
local nodes = {}
for i = 1, 9 do
    local v, d, mode, node = f:remote(i)
    assert(luray.get(v) == 2 * i and luray.get(d) == "from the working dir\n" and
           luray.get(mode) == "test", "task " .. i)
    nodes[luray.get(node)] = true
end
local count = 0
for _ in pairs(nodes) do count = count + 1 end
assert(count == 3, "ran on " .. count .. " nodes")
-- tasks started by tasks carry it on
local outer = luray.remote({scheduling_strategy = "SPREAD"}, function(x)
    local inner = luray.remote({scheduling_strategy = "SPREAD"}, function(y) return require("helper").twice(y) end)
    return luray.get(inner:remote(x)) + 1
end)
local refs = {}
for i = 1, 6 do refs[i] = outer:remote(i) end
for i, v in ipairs(luray.get(refs)) do assert(v == 2 * i + 1, "nested task " .. i) end
print("wd ok")
EOF
L run "$work/proj/wd.lua" "$work/proj"
check "runtime_env.working_dir and env_vars reach tasks on every node, nested ones too" \
    bash -c "[ $rc = 0 ] && grep -q 'wd ok' '$out'"

# ---- security: a wrong key never joins, garbage changes nothing

dropped_before=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['dropped_messages'])" "$work/status.json")
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/wrong.token"
echo >>"$work/wrong.token"
chmod 600 "$work/wrong.token"
LURAY_JOIN_TIMEOUT_MS=3000 L start --address "$head" --token-file "$work/wrong.token" --num-cpus 1 \
    --object-store-memory 100MB
check "a node with the wrong key never joins, and says so" bash -c "[ $rc != 0 ] &&
    grep -q 'token' '$err'"
chmod 644 "$work/wrong.token"
L start --address "$head" --token-file "$work/wrong.token" --num-cpus 1 --object-store-memory 100MB
check "a token file others can read is refused" bash -c "[ $rc != 0 ] && grep -q 'chmod 600' '$err'"
python3 - "$port" <<'EOF'
import os, socket, sys
for port in (int(sys.argv[1]), int(sys.argv[1]) + 2):
    for size in (1, 7, 64, 4096, 200000):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(os.urandom(size))
        s.close()
    # a nanomsg handshake, then garbage frames
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"\x00SP\x00\x00\x50\x00\x00")
    for size in (16, 100, 5000):
        s.sendall(size.to_bytes(8, "big") + os.urandom(size))
    s.close()
EOF
sleep 1.5
L status --json
cp "$out" "$work/status2.json"
check "random bytes at the cluster's ports change nothing but the dropped count" \
    python3 - "$work/status2.json" "$dropped_before" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
assert len([n for n in s["nodes"] if n["alive"]]) == 3, s["nodes"]
assert s["dropped_messages"] > int(sys.argv[2]), s["dropped_messages"]
EOF
lua spread
check "the cluster still works after them" bash -c "[ $rc = 0 ] && grep -q 'spread ok' '$out'"

# ---- a node killed mid-job loses nothing

cat >"$work/kill.lua" <<'EOF'
local victim = arg[1]
local slow = luray.remote({scheduling_strategy = "SPREAD", max_retries = 3}, function(i)
    luray.sleep(1.5)
    return i, luray.get_runtime_context().node_id
end):options{num_returns = 2}
-- results that live on the victim, made by tasks that can run again
local keep = luray.remote({scheduling_strategy = {node_id = victim, soft = true}, max_retries = 2},
    function(n) return string.rep("k", n) end)
local kept = keep:remote(300000)
luray.wait({kept})
-- an actor on the victim that may restart once
local Echo = luray.actor({ where = function(self) return luray.get_runtime_context().node_id end })
local echo = Echo:options{max_restarts = 1, scheduling_strategy = {node_id = victim, soft = true}}:remote()
assert(luray.get(echo.where:remote()) == victim)
-- an object put by a task on the victim: owned there, so lost with it
local putter = luray.remote({scheduling_strategy = {node_id = victim}}, function()
    return {luray.put(string.rep("p", 100000))}
end)
local boxed = luray.get(putter:remote())
local vals, nodes = {}, {}
for i = 1, 12 do vals[i], nodes[i] = slow:remote(i) end
io.stdout:write("submitted\n")
io.stdout:flush()
local got = luray.get(vals)
for i = 1, 12 do assert(got[i] == i) end
for _, nd in ipairs(luray.get(nodes)) do assert(nd ~= victim, "a result came from the dead node") end
assert(#luray.get(kept) == 300000)
local moved = luray.get(echo.where:remote())
assert(moved ~= victim, "the actor restarted on another node")
local ok, e = pcall(luray.get, boxed[1])
assert(not ok and e.type == "ObjectLostError", "an object owned by the dead node: " .. tostring(e))
print("kill ok")
EOF
victim_dir=$(grep -l '"head": false' "$LURAY_TMPDIR"/session_*/node.json | head -1 | xargs dirname)
victim_id=$(python3 -c "import json,sys; print('%08x' % json.load(open(sys.argv[1]))['node_id'])" "$victim_dir/node.json")
victim_pid=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['pid'])" "$victim_dir/node.json")
timeout -k 5 90 "$LURAY_BIN" run "$work/kill.lua" "$victim_id" >"$out" 2>"$err" </dev/null &
driver=$!
for _ in $(seq 100); do grep -q submitted "$out" 2>/dev/null && break; sleep 0.1; done
sleep 0.5
kill -9 "$victim_pid"
t0=$(date +%s.%N)
dead=no
for _ in $(seq 100); do
    timeout 10 "$LURAY_BIN" status --json >"$work/st.json" 2>/dev/null
    if python3 -c "import json,sys; s=json.load(open(sys.argv[1])); sys.exit(0 if any(n['node_id']==sys.argv[2] and not n['alive'] for n in s['nodes']) else 1)" "$work/st.json" "$victim_id" 2>/dev/null; then
        dead=yes
        break
    fi
    sleep 0.1
done
t1=$(date +%s.%N)
secs=$(python3 -c "print(round($t1 - $t0, 2))")
wait "$driver"
rc=$?
check "a killed node is marked dead within 5 s (took ${secs} s)" \
    bash -c "[ $dead = yes ] && python3 -c 'import sys; sys.exit(0 if $secs <= 5 else 1)'"
check "a node killed mid-job loses nothing it can rebuild: tasks, results, actor; what it owned is ObjectLostError" \
    bash -c "[ $rc = 0 ] && grep -q 'kill ok' '$out'"
sleep 1
check "the dead node's workers exit by themselves" bash -c "! grep -qs . <(for p in /proc/[0-9]*; do
    tr '\\0' '\\n' 2>/dev/null <\$p/environ | grep -q '^LURAY_SESSION=$victim_dir\$' && echo \$p; done)"

# ---- the head dies and comes back: nodes register again, named detached actors live on

cat >"$work/detached.lua" <<'EOF'
local ids = {}
for _, nd in ipairs(luray.nodes()) do if nd.alive and not nd.is_head then ids[#ids + 1] = nd.node_id end end
local Keeper = luray.actor({
    init = function(self) self.v = 0 end,
    bump = function(self) self.v = self.v + 1 return self.v end,
})
local k = Keeper:options{name = "keeper", lifetime = "detached",
                         scheduling_strategy = {node_id = ids[1]}}:remote()
assert(luray.get(k.bump:remote()) == 1)
print("detached ok")
EOF
cat >"$work/detached2.lua" <<'EOF'
local k = luray.get_actor("keeper")
assert(luray.get(k.bump:remote()) == 2, "the actor kept its state")
local alive = 0
for _, nd in ipairs(luray.nodes()) do if nd.alive then alive = alive + 1 end end
print("after restart ok", alive)
EOF
lua detached
check "a named detached actor on a node" bash -c "[ $rc = 0 ] && grep -q 'detached ok' '$out'"
head_pid=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['pid'])" "$LURAY_TMPDIR/current/node.json")
kill -9 "$head_pid"
sleep 0.5
L start --head --port "$port" --num-cpus 1 --object-store-memory "$store"
check "the head starts again on its port with its token" bash -c "[ $rc = 0 ]"
for _ in $(seq 50); do
    timeout 10 "$LURAY_BIN" status --json >"$work/st.json" 2>/dev/null
    python3 -c "import json,sys; s=json.load(open(sys.argv[1])); sys.exit(0 if s['alive_nodes'] == 2 else 1)" \
        "$work/st.json" 2>/dev/null && break
    sleep 0.2
done
lua detached2
check "nodes register again and the named detached actor answers with its state" \
    bash -c "[ $rc = 0 ] && grep -q 'after restart ok.2' '$out'"

# ---- stop

L stop
check "stop stops every node" bash -c "[ $rc = 0 ] && grep -q 'stopped 2 nodes' '$out'"
sleep 0.3
left=$(node_pids; worker_pids)
check "no node or worker is left" [ -z "$left" ]
shm_left=
for f in /dev/shm/luray-*; do
    [ -e "$f" ] || continue
    pid=${f#/dev/shm/luray-}
    pid=${pid%%-*}
    kill -0 "$pid" 2>/dev/null || shm_left="$shm_left $f"
done
check "no shared memory is left" [ -z "$shm_left" ]

echo "1..$n"
[ "$failures" -eq 0 ]
