#!/usr/bin/env bash
# A head node fed malformed frames on its inbox (TAP): short, random, bad magic, truncated,
# lying counts, messages from unknown processes, bad HELLOs. The node must drop and count each one
# and keep serving; afterwards `luray stop` leaves no process or shared memory behind.
set -u
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh
LURAY_BIN=${LURAY_BIN:-build/bin/luray}
case $LURAY_BIN in /*) ;; *) LURAY_BIN=$PWD/$LURAY_BIN ;; esac
export LURAY_HISTORY=/dev/null
unset LURAY_ADDRESS
if [ ! -x "$LURAY_BIN" ]; then
    echo "Bail out! no luray binary at $LURAY_BIN"
    exit 1
fi
if ! command -v python3 >/dev/null 2>&1; then
    echo "1..0 # SKIP no python3 to build the frames"
    exit 0
fi

LURAY_TMPDIR=$(mktemp -d /tmp/luray-malformed.XXXXXX) || exit 1
export LURAY_TMPDIR
work=$LURAY_TMPDIR/work
mkdir -p "$work"

shm_names() {
    local f
    for f in /dev/shm/luray-*; do
        [ -e "$f" ] && echo "${f#/dev/shm/}"
    done | sort
}

# Stops whatever the test started, even when it fails half-way, and removes its files.
stopped=0
cleanup() {
    if [ "$stopped" = 0 ]; then
        timeout -k 5 30 "$LURAY_BIN" stop >/dev/null 2>&1
        local p
        for p in $(node_pids) $(worker_pids); do kill -9 "$p" 2>/dev/null; done
    fi
    rm -rf "$LURAY_TMPDIR"
}
trap cleanup EXIT

out=$work/out
err=$work/err

echo "1..13"

# A sender of raw frames: nanomsg has no Python binding here, so a tiny C program pushes stdin's
# bytes as one message to the given address.
cat >"$work/nnsend.c" <<'EOF'
#include <nanomsg/nn.h>
#include <nanomsg/pipeline.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: nnsend ADDRESS < bytes\n");
        return 2;
    }
    size_t cap = 1 << 16, len = 0, got;
    char *buf = malloc(cap);
    while (buf && (got = fread(buf + len, 1, cap - len, stdin)) > 0) {
        len += got;
        if (len == cap)
            buf = realloc(buf, cap *= 2);
    }
    if (!buf)
        return 1;
    int s = nn_socket(AF_SP, NN_PUSH);
    int ms = 5000;
    if (s < 0 || nn_setsockopt(s, NN_SOL_SOCKET, NN_SNDTIMEO, &ms, sizeof(ms)) < 0 ||
        nn_connect(s, argv[1]) < 0 || nn_send(s, buf, len, 0) != (int)len) {
        fprintf(stderr, "nnsend: %s\n", nn_strerror(nn_errno()));
        return 1;
    }
    usleep(200 * 1000); /* nanomsg has no linger: give the pipe time to deliver before closing */
    nn_close(s);
    free(buf);
    return 0;
}
EOF
if cc -o "$work/nnsend" "$work/nnsend.c" -lnanomsg >"$err" 2>&1; then
    ok "the frame sender compiles"
else
    not_ok "the frame sender compiles" "$(head -c 600 "$err")"
fi

# The malformed frames, one file each. Every frame starts with the sender's u32 process id.
python3 - "$work/frames" <<'EOF'
import os, struct, sys

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
MAGIC = b"LRW1"
HELLO, SUBMIT = 1, 3

def msg(typ, body, flags=0, claim=None):
    return struct.pack("<IHH", len(body) if claim is None else claim, typ, flags) + body

def frame(sender, msgs, magic=MAGIC, count=None):
    return (struct.pack("<I", sender) + magic +
            struct.pack("<I", len(msgs) if count is None else count) + b"".join(msgs))

def varint(v):
    b = bytearray()
    while v >= 0x80:
        b.append((v & 0x7f) | 0x80)
        v >>= 7
    b.append(v)
    return bytes(b)

def oid(node, proc, seq):
    return struct.pack("<IIQ", node, proc, seq)

def task(proc):
    """A well-formed task spec (see luray_proto_put_task) submitted as process `proc`."""
    return (oid(1, proc, 1 << 16) + b"\0" + oid(0, 0, 0) + bytes(16) + b"\0" +
            varint(1) + b"f" + varint(0) + varint(0) + varint(0) +
            struct.pack("<HBBB", 1, 0, 0, 0) + struct.pack("<IBIB", 0, 0, 0, 0) +
            oid(0, 0, 0) + struct.pack("<iI", -1, 0))

good = task(0xdeadbeef)
frames = {
    "01-empty": b"",
    "02-short": b"\x01\x02\x03",
    "03-random": os.urandom(4096),
    "04-bad-magic": frame(0, [msg(SUBMIT, good)], magic=b"LRW2"),
    "05-truncated-message": frame(0, [msg(SUBMIT, good[:10], claim=len(good))]),
    "06-count-lies": frame(0, [msg(SUBMIT, good)], count=2),
    "07-huge-length": frame(0, [msg(SUBMIT, good, claim=0xffffffff)]),
    "08-submit-unknown-proc": frame(0xdeadbeef, [msg(SUBMIT, good)]),
    "09-hello-truncated": frame(0, [msg(HELLO, b"\x01\x02")]),
    "10-hello-unknown-worker": frame(0, [msg(HELLO, b"\x02" + struct.pack("<II", os.getpid(),
                                                   0xdeadbeef) + varint(9) + b"ipc:///x")]),
    "11-submit-garbage-body": frame(1, [msg(SUBMIT, os.urandom(40))]),
    "12-header-only-no-magic": struct.pack("<I", 0) + bytes(8),
}
for name, data in frames.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
EOF
nframes=$(ls "$work/frames" | wc -l)

# A head node on a random free port.
port=$(free_port 2)
port=${port:-23457}

shm_before=$work/shm.before
shm_names >"$shm_before"
L start --head --port "$port" --num-cpus 2 --object-store-memory 64MB
check "start --head" [ "$rc" = 0 ]
node=$(node_pids)
session=$(readlink -f "$LURAY_TMPDIR/current")
check "the session has the node's inbox" test -n "$node" -a -S "$session/node.sock"

sent=0
for f in "$work/frames"/*; do
    if "$work/nnsend" "ipc://$session/node.sock" <"$f" >>"$out" 2>>"$err"; then
        sent=$((sent + 1))
    fi
done
check "all $nframes malformed frames were sent" [ "$sent" = "$nframes" ]

check "the node is still alive" kill -0 "${node:-0}"

# dropped_messages of `luray status --json` (empty if it cannot be read). A pattern, not python:
# this runs in a polling loop and python's start-up is slow on a loaded machine.
dropped() {
    L status --json
    [ "$rc" = 0 ] || return
    grep -oE '"dropped_messages"[[:space:]]*:[[:space:]]*[0-9]+' "$out" | grep -oE '[0-9]+$'
}
count=
for _ in $(seq 50); do
    count=$(dropped)
    [ -n "$count" ] && [ "$count" -ge "$nframes" ] && break
    sleep 0.1
done
check "status --json counts each dropped frame once ($nframes sent, ${count:-none} counted)" \
    [ "${count:-0}" -eq "$nframes" ]
[ -n "$count" ] && [ "$count" -gt 0 ] && ok "dropped_messages > 0" ||
    not_ok "dropped_messages > 0" "got '${count}'"

log=$session/logs/node.log
check "the node log names the dropped messages" bash -c "grep -q 'dropped a malformed' '$log' &&
    grep -q 'unknown process' '$log' && grep -q 'HELLO' '$log'"

cat >"$work/task.lua" <<'EOF'
local square = luray.remote(function(x) return x * x end)
print(luray.get(square:remote(7)))
EOF
L run --address "127.0.0.1:$port" "$work/task.lua"
check "the node still runs tasks" bash -c "[ $rc = 0 ] && [ \"\$(cat '$out')\" = 49 ]"

# The well-formed parts of the traffic were not harmed: no task from the forged submits exists.
L status --json
check "no forged task was accepted" python3 -c "
import json, sys
s = json.load(open('$out'))
assert s['finished_tasks'] == 1, s
assert s['pending_tasks'] == 0 and s['queued_tasks'] == 0, s
assert s['nodes'][0]['alive'] is True
" 2>>"$err"

L stop
check "stop stops the node" bash -c "[ $rc = 0 ] && grep -q 'stopped 1 node' '$out'"
left=
for _ in $(seq 30); do
    left=$(node_pids; worker_pids)
    [ -z "$left" ] && break
    sleep 0.1
done
check "no process of this session is left" [ -z "$left" ]
[ -z "$left" ] && stopped=1
# New segments whose creator is gone are leaks (another test run may own live ones).
leaked=
for name in $(shm_names | comm -13 "$shm_before" -); do
    pid=${name#luray-}
    pid=${pid%%-*}
    kill -0 "$pid" 2>/dev/null || leaked="$leaked $name"
done
check "nothing new is left in /dev/shm" [ -z "$leaked" ]

[ "$failures" -eq 0 ]
