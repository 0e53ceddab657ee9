#!/usr/bin/env bash
# `luray serve` end to end (TAP): serve run with its own embedded cluster (curl, serve status,
# serve shutdown, SIGTERM, a deployment whose init fails), serve status's own errors, and a
# deployment with one replica on each node of a two-node cluster on 127.0.0.1 that the proxy
# reaches over nanomsg tcp. Everything runs in a private LURAY_TMPDIR.
set -u
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh
L_TIMEOUT=60
LURAY_BIN=${LURAY_BIN:-build/bin/luray}
case $LURAY_BIN in /*) ;; *) LURAY_BIN=$PWD/$LURAY_BIN ;; esac
export LURAY_HISTORY=/dev/null
unset LURAY_ADDRESS LURAY_TOKEN_FILE

LURAY_TMPDIR=$(mktemp -d /tmp/luray-serve.XXXXXX) || exit 1
export LURAY_TMPDIR
work=$LURAY_TMPDIR/work
mkdir -p "$work"

# The `luray serve run` processes this test started (killed if still there at the end).
servers=()

cleanup() {
    local p
    for p in "${servers[@]}"; do kill -9 "$p" 2>/dev/null; done
    "$LURAY_BIN" stop >/dev/null 2>&1
    for p in $(node_pids) $(worker_pids); do kill -9 "$p" 2>/dev/null; done
    rm -rf "$LURAY_TMPDIR"
}
trap cleanup EXIT

out=$work/out
err=$work/err

if ! command -v curl >/dev/null 2>&1; then
    echo "1..0 # SKIP curl is not installed"
    exit 0
fi

# serve_start APP NAME: starts `luray serve run APP` in the background (its pid in $srv, output in
# $work/NAME.out and .err) and waits up to 30 s for the app to print "deployed".
serve_start() {
    "$LURAY_BIN" serve run "$1" >"$work/$2.out" 2>"$work/$2.err" </dev/null &
    srv=$!
    servers+=("$srv")
    for _ in $(seq 300); do
        grep -q '^deployed$' "$work/$2.out" 2>/dev/null && return 0
        kill -0 "$srv" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# wait_exit PID SECONDS: waits for our child PID to end; its exit status in $exit_rc (255 when it
# was still running and got killed) and the seconds it took in $exit_s.
wait_exit() {
    local start=$SECONDS i
    for ((i = 0; i < $2 * 10; i++)); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$1" 2>/dev/null; then
        kill -9 "$1" 2>/dev/null
        wait "$1" 2>/dev/null
        exit_rc=255
    else
        wait "$1"
        exit_rc=$?
    fi
    exit_s=$((SECONDS - start))
}

# gone PID: nothing of the `serve run` process PID is left after up to 3 s: no process with its
# session (its workers) and no shared memory segment of it.
gone() {
    local left shm
    for _ in $(seq 30); do
        left=$(worker_pids)
        shm=$(for f in /dev/shm/luray-"$1"-*; do [ -e "$f" ] && echo "$f"; done)
        [ -z "$left$shm" ] && return 0
        sleep 0.1
    done
    echo "left: processes [$left] shm [$shm]" >>"$err"
    return 1
}

# The proxy's port from `luray serve status --json` in $out.
json_port() {
    grep -o '"port":[0-9]*' "$out" | head -n 1 | cut -d: -f2
}

cat >"$work/app.lua" <<'EOF'
local serve = require("luray.serve")
local Hello = serve.deployment({ name = "hello", route_prefix = "/hello",
    actor_options = { num_cpus = 0.5 } }, {
    init = function(self, word) self.word = word end,
    call = function(self, req) return { word = self.word, path = req.path } end,
})
serve.run(Hello:bind("bonjour"), { port = 0 })
print("deployed")
io.stdout:flush()
EOF

# A strict reader of `serve status --json` (the plugin's JSON decoder; no cluster starts).
cat >"$work/status_json.lua" <<'EOF'
local f = assert(io.open(arg[1]))
local st = require("luray.serve").json_decode(f:read("a"))
f:close()
local d = assert(st.deployments and st.deployments.hello, "no deployment hello")
assert(d.status == "HEALTHY", "status " .. tostring(d.status))
assert(d.route_prefix == "/hello" and d.replicas == 1 and #d.replica_list == 1, "fields")
assert(st.proxy.host == "127.0.0.1" and math.type(st.proxy.port) == "integer", "proxy")
print(st.proxy.port)
EOF

# ---- 1. serve run with no cluster running, then serve status and serve shutdown.

serve_start "$work/app.lua" app
started=$?
check "serve run deploys the app with its own cluster" bash -c "[ $started = 0 ]"
sleep 0.5
check "serve run blocks once the app is deployed" kill -0 "$srv"

L serve status --json
cp "$out" "$work/status.json"
port=$(json_port)
check "serve status --json: hello HEALTHY on /hello, and the proxy's port" bash -c "[ $rc = 0 ] &&
    [ -n '$port' ] && grep -q '\"status\":\"HEALTHY\"' '$out' &&
    grep -q '\"route_prefix\":\"/hello\"' '$out'"
L run "$work/status_json.lua" "$work/status.json"
check "serve status --json is one valid JSON object" bash -c "[ $rc = 0 ] &&
    [ \"\$(cat '$out')\" = '$port' ]"

curl -s -m 10 -o "$out" "http://127.0.0.1:$port/hello/there?x=1"
check "curl gets the handler's answer" bash -c "grep -q '\"word\":\"bonjour\"' '$out' &&
    grep -q '\"path\":\"/hello/there\"' '$out'"
code=$(curl -s -m 10 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/elsewhere")
check "a path no deployment serves gets 404" [ "$code" = 404 ]

L serve status
check "serve status prints the proxy and hello HEALTHY 1/1 with its route" bash -c "[ $rc = 0 ] &&
    grep -q 'proxy: http://127.0.0.1:$port' '$out' &&
    grep -qE '^hello +HEALTHY +1/1 +/hello\$' '$out'"

L serve shutdown
wait_exit "$srv" 10
check "serve shutdown says so and the serve run process exits 0 within 5 s" bash -c "[ $rc = 0 ] &&
    grep -q 'serve: shut down' '$out' && [ $exit_rc = 0 ] && [ $exit_s -le 5 ]"
check "the port is closed after shutdown" bash -c "! (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null"
check "no process or /dev/shm segment of that run is left" gone "$srv"

# ---- 2. SIGTERM ends serve run in order.

serve_start "$work/app.lua" term
started=$?
L serve status --json
port=$(json_port)
curl -s -m 10 -o "$out" "http://127.0.0.1:$port/hello"
check "a second serve run answers on its port" bash -c "[ $started = 0 ] &&
    grep -q '\"word\":\"bonjour\"' '$out'"
kill -TERM "$srv"
wait_exit "$srv" 10
cp "$work/term.out" "$out"
cp "$work/term.err" "$err"
check "SIGTERM: serve run exits 0 within 5 s" bash -c "[ $exit_rc = 0 ] && [ $exit_s -le 5 ]"
check "the port is closed after SIGTERM" bash -c "! (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null"
check "no process or /dev/shm segment of that run is left" gone "$srv"

# ---- 3. A deployment whose init raises.

cat >"$work/bad.lua" <<'EOF'
local serve = require("luray.serve")
local Bad = serve.deployment({ name = "bad", actor_options = { num_cpus = 0.5 } }, {
    init = function() error("init refuses on purpose") end,
    call = function() return "never" end,
})
serve.run(Bad:bind(), { port = 0 })
print("deployed")
EOF
"$LURAY_BIN" serve run "$work/bad.lua" >"$work/bad.out" 2>"$work/bad.err" </dev/null &
srv=$!
servers+=("$srv")
wait_exit "$srv" 30
cp "$work/bad.out" "$out"
cp "$work/bad.err" "$err"
check "a deployment whose init raises: serve run exits 1 with the error on stderr" bash -c "
    [ $exit_rc = 1 ] && grep -q 'init refuses on purpose' '$work/bad.err' &&
    grep -q 'deployment bad cannot start its replicas' '$work/bad.err' &&
    ! grep -q deployed '$work/bad.out'"
check "nothing of the failed run is left" gone "$srv"

# ---- 4. serve status's own errors.

L serve status
check "serve status with nothing running says so in one line and exits 0" bash -c "[ $rc = 0 ] &&
    grep -qiE 'nothing is running|no luray cluster' '$out' '$err' &&
    [ \$(cat '$out' '$err' | grep -c .) = 1 ]"
L serve status --bogus
check "serve status --bogus is a usage error (exit 2)" bash -c "[ $rc = 2 ] &&
    grep -q 'unknown option --bogus' '$err'"

# ---- 5. A head and a joined node with one CPU each: one replica on each.

cport=$(free_port 3) # the head, its control port, one node
head=127.0.0.1:$cport
L start --head --port "$cport" --num-cpus 1 --object-store-memory 128MB
check "the head starts" bash -c "[ $rc = 0 ]"
L start --address "$head" --num-cpus 1 --object-store-memory 128MB
check "a second node joins" bash -c "[ $rc = 0 ] && grep -q 'joined' '$out'"

L serve status --address "$head"
check "serve status on a cluster without serve says nothing is running" bash -c "[ $rc = 0 ] &&
    grep -q 'serve: nothing is running' '$out'"

cat >"$work/two.lua" <<'EOF'
local serve = require("luray.serve")
local Where = serve.deployment({ name = "where", route_prefix = "/where", num_replicas = 2,
    actor_options = { num_cpus = 1 } }, {
    call = function() return { node = luray.get_runtime_context().node_id } end,
})
local _, at = serve.run(Where:bind(), { port = 0 })
local st = serve.status()
local list = st.deployments.where.replica_list
assert(#list == 2, "replicas: " .. #list)
assert(list[1].node_id and list[2].node_id and list[1].node_id ~= list[2].node_id,
    "both replicas on node " .. tostring(list[1].node_id))
print("replica nodes differ")

local urls = {}
for i = 1, 50 do urls[i] = string.format("'http://127.0.0.1:%d/where/%d'", at.port, i) end
local f = assert(io.popen("curl -s -m 20 -w '\\n' " .. table.concat(urls, " ")))
local count, answers = {}, 0
for line in f:lines() do
    local ok, v = pcall(serve.json_decode, line)
    assert(ok and type(v) == "table" and v.node, "not an answer: " .. line)
    count[v.node] = (count[v.node] or 0) + 1
    answers = answers + 1
end
f:close()
print(string.format("answers %d: %s %d, %s %d", answers, list[1].node_id,
    count[list[1].node_id] or 0, list[2].node_id, count[list[2].node_id] or 0))
if answers == 50 and (count[list[1].node_id] or 0) > 0 and (count[list[2].node_id] or 0) > 0 then
    print("both nodes answered")
end

-- The replica on the other node listens on tcp, and the proxy holds a connection to it.
local ctl = luray.get_actor("SERVE_CONTROLLER", { namespace = "serve" })
for _, h in ipairs(luray.get(ctl.get_replicas:remote("where"))) do
    local info = luray.get(h.__ready:remote())
    if info.node_id ~= st.proxy.node_id then
        local tport = tostring(info.tcp):match("^tcp://127%.0%.0%.1:(%d+)$")
        print("remote replica at " .. tostring(info.tcp))
        local ss = io.popen(string.format(
            "command -v ss >/dev/null && ss -Htn state established '( dport = :%s )' 2>&1 || " ..
            "echo no-ss", tport or 0))
        local conns = ss:read("a")
        ss:close()
        if conns:find("no-ss", 1, true) then
            print("tcp link: no ss")
        elseif tport and conns:find("127.0.0.1:" .. tport, 1, true) then
            print("tcp link established")
        end
    end
end
serve.shutdown()
print("shut down")
EOF
L run --address "$head" "$work/two.lua"
cp "$out" "$work/two.out"
check "the two replicas run on different nodes" grep -q 'replica nodes differ' "$work/two.out"
check "50 requests through the proxy reach both replicas" \
    bash -c "[ $rc = 0 ] && grep -q 'both nodes answered' '$work/two.out'"
if grep -q 'tcp link: no ss' "$work/two.out"; then
    ok "the proxy reaches the other node's replica over tcp # SKIP ss is not installed"
else
    check "the proxy reaches the other node's replica over tcp" bash -c "
        grep -q 'remote replica at tcp://127.0.0.1:' '$work/two.out' &&
        grep -q 'tcp link established' '$work/two.out'"
fi
check "serve.shutdown() returns in the driver" grep -q '^shut down$' "$work/two.out"

L stop
sleep 0.2
left=$(node_pids; worker_pids)
check "luray stop ends the cluster: no node or worker of ours is left" bash -c "[ $rc = 0 ] &&
    [ -z '$left' ]"

echo "1..$n"
[ "$failures" -eq 0 ]
