#!/usr/bin/env bash
# `make bench`: luray's core benchmarks (shared/BENCH.md, Core and ours) on an embedded one-node
# cluster, and nginx's HTTP ceiling beside the serve figures (nginx.sh; the serve group needs
# wrk). Prints one JSON line per figure on stdout; progress and failures go to stderr.
# Env: LURAY_BUILD (build dir, default build), LURAY_BENCH_NUM_CPUS (default 2),
# LURAY_BENCH_SCALE (work multiplier, default 1), LURAY_BENCH_RUNS (timed runs, default 3),
# LURAY_BENCH_TIMEOUT (seconds per group, default 300), LURAY_BENCH_DATA_CSV (the Data group's
# input, as gen_csv.lua writes it; default: one made here of 1,000,000 x LURAY_BENCH_SCALE rows),
# LURAY_BENCH_STREAM_GB (the Data streaming run's input size, default 5).
set -u -o pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${LURAY_BUILD:-build}
case $build in /*) ;; *) build=$root/$build ;; esac
bin=$build/bin/luray
cpus=${LURAY_BENCH_NUM_CPUS:-2}
store=${LURAY_BENCH_STORE_BYTES:-4000000000}
limit=${LURAY_BENCH_TIMEOUT:-300}
failed=()

log() { echo "[bench] $*" >&2; }

if [ ! -x "$bin" ]; then
    echo "luray bench: $bin not found; run 'make' first" >&2
    exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# A private session folder and no address: every group runs on its own embedded cluster, never
# joins a cluster already running here, and a `luray stop` elsewhere on the machine cannot
# reach it.
export LURAY_TMPDIR=$tmp/s
unset LURAY_ADDRESS

# Passes JSON lines to stdout and anything else a script printed to stderr.
json_only() {
    while IFS= read -r line; do
        case $line in
        "{"*) printf '%s\n' "$line" ;;
        *) printf '%s\n' "$line" >&2 ;;
        esac
    done
}

# group_store (set for one call) overrides the store size of that run.
luray_run() {
    timeout -k 10 "$limit" "$bin" run --num-cpus "$cpus" \
        --object-store-memory "${group_store:-$store}" "$@"
}

# run_group NAME [ARGS]: runs NAME.lua with ARGS on its own embedded cluster.
run_group() {
    local name=$1
    shift
    log "== $name $*"
    local t0=$SECONDS
    if ! luray_run "$here/$name.lua" "$@" | json_only; then
        local st=${PIPESTATUS[0]}
        if [ "$st" = 124 ] || [ "$st" = 137 ]; then
            log "$name FAILED: timed out after ${limit}s (LURAY_BENCH_TIMEOUT)"
        else
            log "$name FAILED (exit status $st)"
        fi
        failed+=("$name")
    fi
    log "$name took $((SECONDS - t0))s"
}

# memcpy_gigabytes: the machine's plain copy bandwidth, to read put_gigabytes against.
log "== memcpy_gigabytes (C memcpy of 800 MB, cc -O2)"
if cc -std=c11 -D_GNU_SOURCE -O2 -o "$tmp/memcpy_bw" "$here/lib/memcpy_bw.c"; then
    "$tmp/memcpy_bw" || failed+=(memcpy_gigabytes)
else
    log "memcpy_gigabytes: cannot compile lib/memcpy_bw.c"
    failed+=(memcpy_gigabytes)
fi

# cold_run_seconds: wall time of `luray run` of a one-task script, cluster up and down;
# one warm-up (page cache), then the median of 5.
log "== cold_run_seconds"
cold_runs=()
cold_ok=1
for i in 0 1 2 3 4 5; do
    t0=$(date +%s%N)
    if ! luray_run "$here/cold_run.lua" >&2; then
        cold_ok=0
        break
    fi
    t1=$(date +%s%N)
    [ "$i" -gt 0 ] && cold_runs+=("$(awk -v d=$((t1 - t0)) 'BEGIN { printf "%.4f", d / 1e9 }')")
done
if [ "$cold_ok" = 1 ]; then
    med=$(printf '%s\n' "${cold_runs[@]}" | sort -g | sed -n 3p)
    runs=$(IFS=,; echo "${cold_runs[*]}" | sed 's/,/, /g')
    log "cold_run_seconds: $med s"
    echo "{\"name\": \"cold_run_seconds\", \"value\": $med, \"unit\": \"s\", \"runs\": [$runs], \"system\": \"luray\"}"
else
    log "cold_run_seconds FAILED"
    failed+=(cold_run_seconds)
fi

# The node daemon's own footprint: measured with the embedded node as a separate process, the
# way `luray start` runs it (by default an embedded node is a thread of the driver).
export LURAY_EMBEDDED=process
run_group idle_rss
unset LURAY_EMBEDDED
run_group core_tasks
run_group core_actors
run_group core_objects

run_group core_pg

# The Data group (luray.data): the pipeline, parse and map_batches figures on the 1M-row CSV
# that the peers read too, then the streaming run through a 1 GB store.
log "== gen_csv"
data_csv=${LURAY_BENCH_DATA_CSV:-}
if [ -z "$data_csv" ]; then
    data_csv=$tmp/data.csv
    rows=$(awk -v s="${LURAY_BENCH_SCALE:-1}" \
        'BEGIN { n = int(1000000 * s + 0.5); print (n < 1 ? 1 : n) }')
    if ! "$bin" run "$here/gen_csv.lua" "$data_csv" "$rows"; then
        log "gen_csv FAILED"
        data_csv=
    fi
fi
if [ -n "$data_csv" ]; then
    mkdir -p "$tmp/data"
    run_group data "$data_csv" "$tmp/data"
    group_store=1000000000 run_group data stream "$data_csv" "$tmp/data"
    rm -rf "$tmp/data"
else
    failed+=(data)
fi

# Train: the nn MLP step and the allreduce between two workers.
run_group nn
run_group allreduce
run_group xgb

# Serve: luray's HTTP figures (serve.lua deploys and drives wrk), nginx's static-file ceiling
# under the same wrk command (nginx.sh), and the ratio of the two no-op rates.
if command -v wrk >/dev/null; then
    run_group serve > "$tmp/serve.jsonl"
    cat "$tmp/serve.jsonl"
    log "== nginx.sh"
    "$here/nginx.sh" > "$tmp/nginx.jsonl" || failed+=(nginx)
    cat "$tmp/nginx.jsonl"
    value_of() {
        sed -n "s/.*\"name\": \"$1\", \"value\": \([0-9.eE+-]*\),.*/\1/p" "$2" | head -n 1
    }
    served=$(value_of serve_noop_requests_per_s "$tmp/serve.jsonl")
    ceiling=$(value_of nginx_static_requests_per_s "$tmp/nginx.jsonl")
    if [ -n "$served" ] && [ -n "$ceiling" ]; then
        awk -v l="$served" -v n="$ceiling" 'BEGIN {
            printf "{\"name\": \"serve_noop_nginx_ratio\", \"value\": %.4f, ", l / n
            printf "\"unit\": \"ratio\", \"luray_req_per_s\": %s, ", l
            printf "\"nginx_req_per_s\": %s, \"system\": \"luray\"}\n", n
        }'
    fi
else
    log "== serve: skipped, wrk is not installed (scripts/install-deps.sh bench, or make bench)"
fi

# The multi-node rows, on a three-node cluster of their own (cluster.sh starts and stops it).
log "== cluster.sh"
t0=$SECONDS
LURAY_BUILD=$build "$here/cluster.sh" || failed+=(cluster)
log "cluster.sh took $((SECONDS - t0))s"

# The head at scale: 1,000 simulated nodes heartbeating and asking for placements against one
# real head (LURAY_SIM_NODES to change).
log "== sim_nodes"
t0=$SECONDS
LURAY_BUILD=$build "$here/sim_nodes.sh" || failed+=(sim_nodes)
log "sim_nodes took $((SECONDS - t0))s"

if [ ${#failed[@]} -gt 0 ]; then
    log "FAILED: ${failed[*]}"
    exit 1
fi
log "done"
exit 0
