#!/usr/bin/env bash
# The head at scale, by simulation: starts a real head (`luray start --head`) in a private
# LURAY_TMPDIR and plays 1,000 simulated nodes against it (sim_nodes.c, built into
# $LURAY_BUILD/bench/ when missing or older than its sources): every node registers, heartbeats
# once a second, and together they ask the head where tasks should run. Prints one JSON line per
# figure on stdout; progress and failures go to stderr:
#   sim_head_cpu_percent_beats_only  the head's CPU (% of one core), 1 heartbeat/s per node
#   sim_head_cpu_percent             the same plus LURAY_SIM_RATE placement requests/s
#   sim_head_rss_per_node_kb         (head RSS in that steady state - before any node) / nodes
#   sim_place_latency_ms_p50, _p99   PLACE -> PLACED round trip at that rate
#   sim_head_decisions_per_second    PLACED answers per second, asked as fast as they come
# The goal: 1,000 nodes at 1 heartbeat/s under 10% of one core.
# Env: LURAY_BUILD (default build), LURAY_SIM_NODES (1000), LURAY_SIM_RATE (1000 requests/s),
# LURAY_SIM_SECONDS (20), LURAY_SIM_BEATS_SECONDS (12), LURAY_SIM_MAX_SECONDS (6),
# LURAY_SIM_PORT (default: a free one from 20000-31999), LURAY_BENCH_TIMEOUT (300 s); further
# arguments go to the simulator (sim_nodes --help). Exits 1 when a figure could not be measured
# or the head did not serve every simulated node (the figures measured are printed still).
set -u -o pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${LURAY_BUILD:-build}
case $build in /*) ;; *) build=$root/$build ;; esac
bin=$build/bin/luray
lib=$build/obj/libluraycore.a
sim=$build/bench/sim_nodes
limit=${LURAY_BENCH_TIMEOUT:-300}

log() { echo "[bench] $*" >&2; }

if [ ! -x "$bin" ] || [ ! -f "$lib" ]; then
    echo "sim_nodes: $bin or $lib not found; run 'make' first" >&2
    exit 1
fi

# The simulator links the core library as the unit tests do (Makefile: $(BUILD)/tests/%).
if [ ! -x "$sim" ] || [ "$here/sim_nodes.c" -nt "$sim" ] || [ "$lib" -nt "$sim" ]; then
    pkgs="lua5.4 libuv nanomsg libcjson libsodium"
    san=""
    case "${SANITIZE:-0}:$build" in
    1:* | *:*-san) san="-fsanitize=address,undefined -fno-omit-frame-pointer" ;;
    esac
    mkdir -p "$build/bench"
    log "building $sim"
    # shellcheck disable=SC2046,SC2086
    if ! ${CC:-cc} -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -O2 -g -fPIC \
        -I"$root/core" -I"$root/include" $san $(pkg-config --cflags $pkgs) -o "$sim" \
        "$here/sim_nodes.c" "$lib" $san $(pkg-config --libs $pkgs) -lreadline -lm -lpthread -ldl
    then
        log "sim_nodes: cannot build $here/sim_nodes.c"
        exit 1
    fi
fi

# Thousands of connections: the head and the simulator both need descriptors beyond the usual
# 1024 (the simulator raises its own limit as far as the hard one allows).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

tmp=$(mktemp -d "${TMPDIR:-/tmp}/luray-sim.XXXXXX")
export LURAY_TMPDIR=$tmp/s
unset LURAY_ADDRESS
head_pid=""

cleanup() {
    if [ -n "$head_pid" ]; then
        "$bin" stop >&2 || true
        # The head may take a moment to exit after `luray stop`; one still running after 10 s
        # is ours to end.
        for _ in $(seq 100); do
            kill -0 "$head_pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$head_pid" 2>/dev/null; then
            log "the head (pid $head_pid) outlived 'luray stop': killing it"
            kill -9 "$head_pid" 2>/dev/null || true
        fi
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A port nobody listens on, below the ephemeral range that the simulator's thousands of
# connections draw from (the head also takes port + 1 for its control channel).
started=0
for try in 1 2 3 4 5; do
    port=${LURAY_SIM_PORT:-$((20000 + RANDOM % 12000))}
    if "$bin" start --head --port "$port" --num-cpus 1 --object-store-memory 100MB \
        >"$tmp/start.out" 2>&1; then
        started=1
        break
    fi
    log "cannot start a head on port $port (try $try): $(tail -n 1 "$tmp/start.out")"
    [ -n "${LURAY_SIM_PORT:-}" ] && break
done
if [ "$started" != 1 ]; then
    exit 1
fi
head_pid=$(sed -n 's/.*"pid": *\([0-9][0-9]*\).*/\1/p' "$LURAY_TMPDIR/current/node.json")
if [ -z "$head_pid" ]; then
    log "no pid in $LURAY_TMPDIR/current/node.json"
    exit 1
fi
log "head pid $head_pid at 127.0.0.1:$port"

t0=$SECONDS
timeout -k 10 "$limit" "$sim" --port "$port" --token "$LURAY_TMPDIR/cluster-$port/token" \
    --pid "$head_pid" --luray "$bin" --nodes "${LURAY_SIM_NODES:-1000}" \
    --rate "${LURAY_SIM_RATE:-1000}" --seconds "${LURAY_SIM_SECONDS:-20}" \
    --beats-seconds "${LURAY_SIM_BEATS_SECONDS:-12}" \
    --max-seconds "${LURAY_SIM_MAX_SECONDS:-6}" "$@"
st=$?
log "sim_nodes took $((SECONDS - t0))s"

# What the head said about it, before `luray stop` removes its files.
headlog=$LURAY_TMPDIR/current/logs/node.log
if [ -f "$headlog" ]; then
    dead=$(grep -c '\[head\].* is dead' "$headlog")
    log "head log: $dead node(s) declared dead; its warnings and errors, counted:"
    grep -E 'warning|error' "$headlog" |
        sed -E 's/[0-9a-f]{8}/X/g; s/:[0-9]{2,5}/:P/g; s/[0-9]+\.[0-9]+ s/T s/g' |
        sort | uniq -c | sort -rn | head -n 8 >&2
fi
if ! kill -0 "$head_pid" 2>/dev/null; then
    log "FAILED: the head (pid $head_pid) is no longer running"
    exit 1
fi

case $st in
0) ;;
3) log "FAILED: the head did not serve every simulated node (see above)"; exit 1 ;;
124 | 137) log "FAILED: timed out after ${limit}s (LURAY_BENCH_TIMEOUT)"; exit 1 ;;
*) log "FAILED: sim_nodes exited with status $st"; exit 1 ;;
esac
exit 0
