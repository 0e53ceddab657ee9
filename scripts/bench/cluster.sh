#!/usr/bin/env bash
# The multi-node rows of BENCH.md on a local cluster of three nodes (a head and two nodes, one
# CPU each, 1.5 GB stores): multi_node_tasks_async and object_transfer_gigabytes (cluster.lua,
# a driver on the head), then node_death_detection_seconds: a fourth node is started and killed
# with kill -9, three times, timing until the head marks it dead. JSON lines on stdout.
# Env: LURAY_BUILD, LURAY_BENCH_SCALE, LURAY_BENCH_RUNS, LURAY_BENCH_TIMEOUT (as run.sh).
set -u -o pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${LURAY_BUILD:-build}
case $build in /*) ;; *) build=$root/$build ;; esac
bin=$build/bin/luray
limit=${LURAY_BENCH_TIMEOUT:-300}
store=${LURAY_BENCH_CLUSTER_STORE:-1500MB}
status=0

log() { echo "[bench] $*" >&2; }

LURAY_TMPDIR=$(mktemp -d) || exit 1
export LURAY_TMPDIR
unset LURAY_ADDRESS LURAY_TOKEN_FILE
trap '"$bin" stop >/dev/null 2>&1; rm -rf "$LURAY_TMPDIR"' EXIT

. "$root/tests/integration/lib.sh"
port=$(free_port 6)
head=127.0.0.1:$port
"$bin" start --head --port "$port" --num-cpus 1 --object-store-memory "$store" >/dev/null &&
    "$bin" start --address "$head" --num-cpus 1 --object-store-memory "$store" >/dev/null &&
    "$bin" start --address "$head" --num-cpus 1 --object-store-memory "$store" >/dev/null || {
    log "cluster: cannot start a three-node cluster"
    exit 1
}
sleep 1.5 # the nodes' first heartbeats

log "== cluster (3 local nodes)"
timeout -k 10 "$limit" "$bin" run "$here/cluster.lua" | while IFS= read -r line; do
    case $line in "{"*) printf '%s\n' "$line" ;; *) printf '%s\n' "$line" >&2 ;; esac
done
[ "${PIPESTATUS[0]}" = 0 ] || { log "cluster.lua FAILED"; status=1; }

# node_death_detection_seconds: from kill -9 of a node's daemon until `luray status` shows it
# dead. Nodes beat every LURAY_HEARTBEAT_MS (1000) and die after LURAY_NODE_TIMEOUT_MS (3000).
log "== node_death_detection_seconds"
runs=()
for i in 1 2 3; do
    before=$(ls -d "$LURAY_TMPDIR"/session_* | sort)
    "$bin" start --address "$head" --num-cpus 1 --object-store-memory 64MB >/dev/null || break
    dir=$(comm -13 <(echo "$before") <(ls -d "$LURAY_TMPDIR"/session_* | sort) | head -1)
    id=$(python3 -c "import json,sys; print('%08x' % json.load(open(sys.argv[1]))['node_id'])" "$dir/node.json")
    pid=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['pid'])" "$dir/node.json")
    sleep 1.2
    t0=$(date +%s%N)
    kill -9 "$pid"
    secs=
    while :; do
        "$bin" status --json 2>/dev/null | python3 -c "
import json, sys
s = json.load(sys.stdin)
sys.exit(0 if any(n['node_id'] == sys.argv[1] and not n['alive'] for n in s['nodes']) else 1)" "$id" && {
            secs=$(awk -v d=$(($(date +%s%N) - t0)) 'BEGIN { printf "%.3f", d / 1e9 }')
            break
        }
        [ $(($(date +%s%N) - t0)) -gt 30000000000 ] && break
        sleep 0.05
    done
    [ -n "$secs" ] || { log "node_death_detection_seconds: node $id never marked dead"; break; }
    log "node_death_detection_seconds: run $i: $secs s"
    runs+=("$secs")
done
if [ ${#runs[@]} = 3 ]; then
    med=$(printf '%s\n' "${runs[@]}" | sort -g | sed -n 2p)
    echo "{\"name\": \"node_death_detection_seconds\", \"value\": $med, \"unit\": \"s\", \"runs\": [$(IFS=,; echo "${runs[*]}" | sed 's/,/, /g')], \"system\": \"luray\", \"heartbeat_ms\": ${LURAY_HEARTBEAT_MS:-1000}, \"node_timeout_ms\": ${LURAY_NODE_TIMEOUT_MS:-3000}}"
else
    log "node_death_detection_seconds FAILED"
    status=1
fi
exit $status
