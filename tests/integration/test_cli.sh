#!/usr/bin/env bash
# The `luray` command line end to end (TAP): --version/--help, run's errors and `arg`, --config,
# and a real head node through start, status, run --address and stop, in a private LURAY_TMPDIR.
set -u
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh
LURAY_BIN=${LURAY_BIN:-build/bin/luray}
case $LURAY_BIN in /*) ;; *) LURAY_BIN=$PWD/$LURAY_BIN ;; esac
export LURAY_HISTORY=/dev/null
unset LURAY_ADDRESS

LURAY_TMPDIR=$(mktemp -d /tmp/luray-cli.XXXXXX) || exit 1
export LURAY_TMPDIR
work=$LURAY_TMPDIR/work
mkdir -p "$work"

# Stops whatever the test started, even when it fails half-way, and removes its files.
cleanup() {
    "$LURAY_BIN" stop >/dev/null 2>&1
    local p
    for p in $(node_pids); do kill -9 "$p" 2>/dev/null; done
    rm -rf "$LURAY_TMPDIR"
}
trap cleanup EXIT

out=$work/out
err=$work/err


echo "1..26"

L --version
check "--version prints the version" [ "$rc" = 0 -a "$(cat "$out")" = "luray 0.1.0" ]

L --help
check "--help lists the commands" bash -c "[ $rc = 0 ] && grep -q 'run SCRIPT' '$out' &&
    grep -q 'start --head' '$out' && grep -q 'status' '$out' && grep -q 'stop' '$out' &&
    grep -q 'plugins' '$out' && grep -q 'job' '$out' && grep -q 'start --address' '$out'"

L run --help
check "run --help shows run's options" bash -c "[ $rc = 0 ] && grep -q -- '--num-cpus' '$out' &&
    grep -q -- '--working-dir' '$out' && grep -q -- '--config' '$out'"

L frobnicate
check "an unknown command is named, with a pointer to --help" bash -c "[ $rc -ne 0 ] &&
    grep -q \"unknown command 'frobnicate'\" '$err' && grep -q -- '--help' '$err'"

L run "$work/missing.lua"
check "run of a missing script: exit 1 and one clear line" bash -c "[ $rc = 1 ] &&
    grep -q 'luray run: cannot open $work/missing.lua: No such file or directory' '$err' &&
    [ \$(grep -c . '$err') = 1 ]"

L run
check "run without a script is a usage error (exit 2)" bash -c "[ $rc = 2 ] &&
    grep -q 'no SCRIPT' '$err'"

printf 'local x = 1\nlocal y = = 2\n' >"$work/syntax.lua"
L run "$work/syntax.lua"
check "a syntax error: exit 1 with file:line" bash -c "[ $rc = 1 ] &&
    grep -q 'syntax.lua:2:' '$err'"

printf 'local function inner()\n  error("boom from inner")\nend\ninner()\n' >"$work/raise.lua"
L run "$work/raise.lua"
check "a script that raises: exit 1 with a traceback" bash -c "[ $rc = 1 ] &&
    grep -q 'raise.lua:2: boom from inner' '$err' && grep -q 'stack traceback' '$err' &&
    grep -q 'inner' '$err'"

cat >"$work/args.lua" <<'EOF'
local a, b, c = ...
print(#arg, arg[0], arg[1], arg[2], arg[3], a, b, c, arg[-1])
EOF
L run "$work/args.lua" one "two words" --three
want=$(printf '3\t%s\tone\ttwo words\t--three\tone\ttwo words\t--three\trun' "$work/args.lua")
check "arg and ... hold the script's arguments, as in lua" [ "$rc" = 0 -a "$(cat "$out")" = "$want" ]

printf '{"num_cpus": 2,\n  "address": oops}\n' >"$work/bad.json"
L run --config "$work/bad.json" "$work/args.lua"
check "a bad --config names the file and the position" bash -c "[ $rc = 1 ] &&
    grep -q '$work/bad.json' '$err' && grep -q 'line 2' '$err' &&
    [ \$(grep -c . '$err') = 1 ]"

printf '{"address": "127.0.0.1:1"}\n' >"$work/cfg.json"
cat >"$work/cfg.lua" <<'EOF'
local cfg = require("luray.config")
print(cfg.address, cfg.num_cpus, math.type(cfg.object_store_memory), cfg.script ~= nil)
EOF
L run --config "$work/cfg.json" --num-cpus 3 --object-store-memory 64MB "$work/cfg.lua"
check "--config gives defaults that flags override" bash -c "[ $rc = 0 ] &&
    [ \"\$(cat '$out')\" = \"$(printf '127.0.0.1:1\t3\tinteger\ttrue')\" ]"

# A script that ends with os.exit while its embedded cluster runs: the exit status is kept and
# the cluster goes down in order (no store segment of a dead process is left in /dev/shm).
cat >"$work/exit.lua" <<'EOF'
print(luray.get(luray.remote(function() return 5 end):remote()))
os.exit(3)
EOF
L run --num-cpus 1 "$work/exit.lua"
dead_after_exit=
for f in /dev/shm/luray-*; do
    [ -e "$f" ] || continue
    pid=${f#/dev/shm/luray-}
    pid=${pid%%-*}
    kill -0 "$pid" 2>/dev/null || dead_after_exit="$dead_after_exit $f"
done
check "os.exit keeps its status and takes the embedded cluster down" bash -c "[ $rc = 3 ] &&
    [ \"\$(cat '$out')\" = 5 ] && [ -z '$dead_after_exit' ]"

# A head node on a random free port.
port=$(free_port 2)

L start --head --port "$port" --num-cpus 3 --object-store-memory 128MB
check "start --head prints the address to join" bash -c "[ $rc = 0 ] &&
    grep -q 'luray run --address 127.0.0.1:$port' '$out' && grep -q 'LURAY_ADDRESS=' '$out'"
check "the node runs" [ -n "$(node_pids)" ]

L start --head --port "$((port + 1))"
check "a second start --head refuses while one runs" bash -c "[ $rc = 1 ] &&
    grep -q 'already running at 127.0.0.1:$port' '$err' && grep -q 'luray stop' '$err' &&
    [ \$(grep -c . '$err') = 1 ]"

L status
check "status shows the node and its resources" bash -c "[ $rc = 0 ] &&
    grep -q '1 alive' '$out' && grep -q 'CPU' '$out' && grep -q 'object store' '$out'"

L status --json
check "status --json: nodes[0].alive and resources.CPU" lua5.4 -e "
    local f = assert(io.open('$out')); local t = f:read('a'); f:close()
    assert(t:find('\"nodes\"%s*:%s*%[%s*{'), 'no nodes array')
    assert(t:find('\"alive\"%s*:%s*true'), 'node not alive')
    local res = assert(t:match('\"resources\"%s*:%s*(%b{})'), 'no resources')
    assert(res:match('\"CPU\"%s*:%s*([%d.]+)') == '3', 'CPU is not 3')" 2>>"$err"

# Python's json is stricter than a pattern: use it when it is there.
if command -v python3 >/dev/null 2>&1; then
    check "status --json is valid JSON with the cluster's state" python3 -c "
import json, sys
s = json.load(open('$out'))
assert s['nodes'][0]['alive'] is True
assert s['resources']['CPU'] == 3, s['resources']
assert 'available' in s
" 2>>"$err"
else
    ok "status --json is valid JSON with the cluster's state # SKIP no python3"
fi

echo 'print(luray.cluster_resources().CPU)' >"$work/cpus.lua"
L run --address "127.0.0.1:$port" "$work/cpus.lua"
check "run --address joins the cluster" bash -c "[ $rc = 0 ] && [ \"\$(cat '$out')\" = 3 ]"

L run --address "127.0.0.1:$((port + 1))" "$work/cpus.lua"
check "run --address of a port with no cluster fails clearly" bash -c "[ $rc = 1 ] &&
    grep -q 'no luray cluster at 127.0.0.1:$((port + 1))' '$err'"

L stop
check "stop stops the node" bash -c "[ $rc = 0 ] && grep -q 'stopped 1 node' '$out'"
sleep 0.2
left=$(node_pids; worker_pids)
check "no node or worker of ours is left" [ -z "$left" ]
shm_left=$(for f in /dev/shm/luray-*; do [ -e "$f" ] && echo "$f"; done)
# Only segments of processes that are gone count (another test run may own live ones).
dead_shm=
for f in $shm_left; do
    pid=${f#/dev/shm/luray-}
    pid=${pid%%-*}
    kill -0 "$pid" 2>/dev/null || dead_shm="$dead_shm $f"
done
check "no /dev/shm segment of a dead luray process is left" [ -z "$dead_shm" ]
# The head's state folder stays (a head started again on that port keeps its token and its jobs'
# history); nothing else does.
check "the session files are gone" bash -c "[ -z \"\$(ls -A '$LURAY_TMPDIR' | grep -v '^work$' | grep -v '^cluster-')\" ] &&
    [ -z \"\$(ls -A '$LURAY_TMPDIR'/cluster-* 2>/dev/null | grep -v -e '^token$' -e '^jobs' -e '^$' -e ':$')\" ]"

L status
check "status after stop fails with a clear message" bash -c "[ $rc = 1 ] &&
    grep -q 'no luray cluster is running' '$err' && grep -q \"luray start --head\" '$err' &&
    [ \$(grep -c . '$err') = 1 ]"

# `luray stop` also stops a script running its own embedded cluster: the script gets an error
# (as for Ctrl-C), its cluster goes down in order and nothing is left behind.
cat >"$work/long.lua" <<'EOF'
local f = luray.remote(function() luray.sleep(30) return 1 end)
print("started")
io.stdout:flush()
luray.get(f:remote())
EOF
timeout -k 5 60 "$LURAY_BIN" run "$work/long.lua" >"$work/long.out" 2>"$work/long.err" </dev/null &
long_pid=$!
for _ in $(seq 50); do grep -q started "$work/long.out" 2>/dev/null && break; sleep 0.1; done
L stop
wait "$long_pid"
long_rc=$?
check "stop ends a script's embedded cluster in order" bash -c "[ $long_rc = 1 ] &&
    grep -q 'interrupted' '$work/long.err' &&
    [ -z \"\$(ls -A '$LURAY_TMPDIR' | grep -v '^work$' | grep -v '^cluster-')\" ]"

[ "$failures" -eq 0 ]
