#!/usr/bin/env bash
# `luray job` end to end (TAP): a real head (`luray start --head`), a job whose working dir holds
# the module its main.lua requires, status, logs and list, a failing job, stopping a sleeping job
# (its processes go too), a wrong key, a head restarted on the same port that keeps its jobs, and
# `luray stop`, all in a private LURAY_TMPDIR.
set -u
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh
L_TIMEOUT=90
LURAY_BIN=${LURAY_BIN:-build/bin/luray}
case $LURAY_BIN in /*) ;; *) LURAY_BIN=$PWD/$LURAY_BIN ;; esac
export LURAY_HISTORY=/dev/null
unset LURAY_ADDRESS LURAY_TOKEN_FILE

# A build whose head does not serve jobs yet says so: nothing to test there.
if ! "$LURAY_BIN" job --help 2>/dev/null | grep -q 'usage: luray job'; then
    echo "1..0 # SKIP this build has no 'luray job'"
    exit 0
fi

LURAY_TMPDIR=$(mktemp -d /tmp/luray-jobs.XXXXXX) || exit 1
export LURAY_TMPDIR
work=$LURAY_TMPDIR/work
mkdir -p "$work"

# The live processes of our cluster: its nodes, their workers, and the drivers of its jobs.
our_pids() {
    local p env
    for p in /proc/[0-9]*; do
        [ "$(cut -d' ' -f3 "$p/stat" 2>/dev/null)" = Z ] && continue
        env=$(tr '\0' '\n' 2>/dev/null <"$p/environ")
        if tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -q -- "--session $LURAY_TMPDIR/" ||
            grep -q "^LURAY_SESSION=$LURAY_TMPDIR/" <<<"$env" ||
            { grep -q "^LURAY_JOB_ID=" <<<"$env" &&
                grep -q "^LURAY_TMPDIR=$LURAY_TMPDIR\$" <<<"$env"; }; then
            echo "${p#/proc/}"
        fi
    done
}

cleanup() {
    "$LURAY_BIN" stop >/dev/null 2>&1
    local p
    for p in $(our_pids); do kill -9 "$p" 2>/dev/null; done
    rm -rf "$LURAY_TMPDIR"
}
trap cleanup EXIT

out=$work/out
err=$work/err
# The job id that `job submit` printed.
job_id() {
    grep -o 'job-[0-9a-f]\{8\} submitted' "$out" | head -n 1 | cut -d' ' -f1
}

echo "1..18"

port=$(free_port 2)
addr=127.0.0.1:$port

L start --head --port "$port" --num-cpus 2 --object-store-memory 128MB
check "start --head" [ "$rc" = 0 ]

mkdir -p "$work/app/lib"
cat >"$work/app/helper.lua" <<'EOF'
local M = {}
function M.greet(who) return "greetings, " .. who end
return M
EOF
cat >"$work/app/main.lua" <<'EOF'
local helper = require("helper")
print(helper.greet(arg[1]))
print("job id " .. tostring(os.getenv("LURAY_JOB_ID")))
print("doubled " .. luray.get(luray.remote(function(x) return x * 2 end):remote(21)))
print("task sees " .. luray.get(luray.remote(function()
    return require("helper").greet(os.getenv("JOB_MODE") or "no env")
end):remote()))
EOF
cat >"$work/app/fail.lua" <<'EOF'
error("boom in the job")
EOF
cat >"$work/app/sleep.lua" <<'EOF'
print("sleeping")
io.stdout:flush()
os.execute("sleep 120")
EOF
mkdir -p "$work/app/.git" && echo "not shipped" >"$work/app/.git/HEAD"

L job submit --address "$addr" --working-dir "$work/app" --env JOB_MODE=env-ok -- main.lua world
id1=$(job_id)
check "submit runs main.lua with its module and prints its output; its tasks get both" bash -c "[ $rc = 0 ] &&
    grep -q 'greetings, world' '$out' && grep -q 'doubled 42' '$out' &&
    grep -q 'task sees greetings, env-ok' '$out' &&
    grep -q 'job id $id1' '$out' && grep -q '$id1 SUCCEEDED' '$out'"

L job status "$id1" --address "$addr"
check "status says SUCCEEDED with exit code 0" bash -c "[ $rc = 0 ] &&
    grep -q '^$id1: SUCCEEDED' '$out' && grep -q 'exit code:  0' '$out' &&
    grep -q 'entrypoint: main.lua' '$out'"

# Without --address: the local head, and its key file in $LURAY_TMPDIR/cluster-PORT/.
L job status "$id1" --json
if command -v python3 >/dev/null 2>&1; then
    check "status --json (local head found by itself)" python3 -c "
import json
s = json.load(open('$out'))
assert s['status'] == 'SUCCEEDED' and s['exit_code'] == 0, s
assert s['end_time'] >= s['start_time'] > 0, s
" 2>>"$err"
else
    check "status --json (local head found by itself)" grep -q '"SUCCEEDED"' "$out"
fi

L job logs "$id1"
check "logs prints the driver's output" bash -c "[ $rc = 0 ] && grep -q 'greetings, world' '$out'"

wd=$LURAY_TMPDIR/cluster-$port/jobs/$id1/wd
check "the job ran in its unpacked working dir, without .git" bash -c "[ -f '$wd/helper.lua' ] &&
    [ ! -e '$wd/.git' ]"

L job submit --working-dir "$work/app" fail.lua
id2=$(job_id)
check "a failing job: exit 1 and one line saying FAILED" bash -c "[ $rc = 1 ] &&
    grep -q 'boom in the job' '$out' &&
    grep -q 'luray job submit: $id2 FAILED: the driver exited with status 1' '$err'"

L job submit --no-wait --working-dir "$work/app" sleep.lua
id3=$(job_id)
check "--no-wait returns at once" bash -c "[ $rc = 0 ] && [ -n '$id3' ] &&
    ! grep -q sleeping '$out'"

for _ in $(seq 100); do
    L job logs "$id3"
    grep -q sleeping "$out" && break
    sleep 0.1
done
L job status "$id3"
check "the sleeping job runs" grep -q "^$id3: RUNNING" "$out"

job_procs() {
    local p
    for p in /proc/[0-9]*; do
        [ "$(cut -d' ' -f3 "$p/stat" 2>/dev/null)" = Z ] && continue
        tr '\0' '\n' 2>/dev/null <"$p/environ" | grep -q "^LURAY_JOB_ID=$1\$" && echo "${p#/proc/}"
    done
}
check "its driver and its sleep run" [ "$(job_procs "$id3" | wc -l)" -ge 2 ]

L job stop "$id3"
check "stop ends it: STOPPED" bash -c "[ $rc = 0 ] && grep -q '$id3 STOPPED' '$out'"
sleep 0.3
check "nothing of the stopped job runs" [ -z "$(job_procs "$id3")" ]

L job list
check "list shows the three jobs" bash -c "[ $rc = 0 ] && grep -q '$id1 *SUCCEEDED' '$out' &&
    grep -q '$id2 *FAILED' '$out' && grep -q '$id3 *STOPPED' '$out'"

L job status job-00000000
check "an unknown job: exit 1, one line" bash -c "[ $rc = 1 ] &&
    grep -q 'luray job status: no job job-00000000' '$err' && [ \$(grep -c . '$err') = 1 ]"

dd if=/dev/urandom bs=32 count=1 2>/dev/null | od -An -tx1 | tr -d ' \n' >"$work/other.token"
echo >>"$work/other.token"
chmod 600 "$work/other.token"
L job list --token-file "$work/other.token"
check "another cluster's key gets no answer" bash -c "[ $rc = 1 ] &&
    grep -q 'no luray head answers at 127.0.0.1:$((port + 1))' '$err'"

# A head started again on the same port keeps the jobs of the one before.
L stop
L start --head --port "$port" --num-cpus 1 --object-store-memory 64MB
L job status "$id1"
check "a restarted head keeps its jobs" bash -c "[ $rc = 0 ] && grep -q '^$id1: SUCCEEDED' '$out'"
L job logs "$id1"
check "and their logs" bash -c "[ $rc = 0 ] && grep -q 'greetings, world' '$out'"

L stop
L job list
check "after luray stop: exit 1 saying no cluster runs" bash -c "[ $rc = 1 ] &&
    grep -q 'no luray cluster is running' '$err'"

[ "$failures" = 0 ]
