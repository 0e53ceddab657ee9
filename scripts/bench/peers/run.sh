#!/usr/bin/env bash
# `make bench-peers`: runs luray's benchmarks (../run.sh) and the same workloads on Ray
# (ray_micro.py, ray_multinode.py, data_ray.py, serve_ray.py), pandas (data_pandas.py) and Dask
# (data_dask.py) on this machine, then prints a table: name, luray, ray, ratio (luray/ray), and
# one for the other peers (nginx's static-file figures, from ../run.sh, sit beside the serve
# no-op ones). The Data figures of every side read one CSV, made once by ../gen_csv.lua.
# Usage: run.sh [FILE]  -- FILE receives every JSON line of every side.
set -u -o pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${LURAY_BUILD:-build}
case $build in /*) ;; *) build=$root/$build ;; esac
out=${1:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
log() { echo "[bench-peers] $*" >&2; }
status=0

# The Data input, shared by every side: 1,000,000 x LURAY_BENCH_SCALE rows.
data_csv=$tmp/data.csv
rows=$(awk -v s="${LURAY_BENCH_SCALE:-1}" \
    'BEGIN { n = int(1000000 * s + 0.5); print (n < 1 ? 1 : n) }')
log "gen_csv: $rows rows"
if LURAY_TMPDIR=$tmp/gen "$build/bin/luray" run "$here/../gen_csv.lua" "$data_csv" "$rows"; then
    export LURAY_BENCH_DATA_CSV=$data_csv
else
    log "gen_csv failed: the Data rows stay empty"
    data_csv=
    status=1
fi

log "luray: scripts/bench/run.sh"
t0=$SECONDS
"$here/../run.sh" > "$tmp/luray.jsonl" || { log "luray bench reported failures"; status=1; }
log "luray side took $((SECONDS - t0))s"

# The Data peers (Ray Data too) need pandas and pyarrow.
if [ -n "$data_csv" ] && ! python3 -c "import pandas, pyarrow, dask.dataframe" 2>/dev/null; then
    log "installing the Data peers' packages (pandas, dask, distributed, pyarrow) with pip"
    python3 -m pip install --quiet pandas "dask[dataframe]" distributed pyarrow >&2 || true
fi
if ! python3 -c "import ray, numpy" 2>/dev/null; then
    log "installing the Ray peer's Python packages (ray, numpy) with pip"
    python3 -m pip install --quiet ray numpy >&2 || true
fi
if python3 -c "import ray, numpy" 2>/dev/null; then
    log "ray: scripts/bench/peers/ray_micro.py"
    # Bounded: the whole Ray side gets at most 10 minutes.
    t0=$SECONDS
    timeout -k 15 "${RAY_BENCH_TIMEOUT:-600}" python3 "$here/ray_micro.py" > "$tmp/ray.jsonl" \
        || { log "ray bench reported failures"; status=1; }
    log "ray side took $((SECONDS - t0))s"
    log "ray: scripts/bench/peers/ray_multinode.py"
    t0=$SECONDS
    timeout -k 15 "${RAY_BENCH_TIMEOUT:-600}" python3 "$here/ray_multinode.py" >> "$tmp/ray.jsonl" \
        || { log "ray multi-node bench reported failures"; status=1; }
    log "ray multi-node side took $((SECONDS - t0))s"
    if [ -n "$data_csv" ]; then
        log "ray: scripts/bench/peers/data_ray.py"
        t0=$SECONDS
        timeout -k 15 "${RAY_BENCH_TIMEOUT:-600}" python3 "$here/data_ray.py" "$data_csv" \
            >> "$tmp/ray.jsonl" || { log "ray data bench reported failures"; status=1; }
        log "ray data side took $((SECONDS - t0))s"
    fi
    # Ray Serve needs its extra packages (starlette, uvicorn, ...), and the serve figures wrk.
    if ! python3 -c "import ray.serve" 2>/dev/null; then
        log "installing Ray Serve's packages (ray[serve]) with pip"
        python3 -m pip install --quiet "ray[serve]" >&2 || true
    fi
    if ! command -v wrk >/dev/null; then
        log "wrk is missing (scripts/install-deps.sh bench): the Ray serve rows stay empty"
    elif python3 -c "import ray.serve" 2>/dev/null; then
        log "ray: scripts/bench/peers/serve_ray.py"
        t0=$SECONDS
        timeout -k 15 "${RAY_BENCH_TIMEOUT:-600}" python3 "$here/serve_ray.py" \
            >> "$tmp/ray.jsonl" || { log "ray serve bench reported failures"; status=1; }
        log "ray serve side took $((SECONDS - t0))s"
    else
        log "Ray Serve is missing and could not be installed: the Ray serve rows stay empty"
    fi
else
    log "ray or numpy is missing and could not be installed: the Ray column stays empty"
    : > "$tmp/ray.jsonl"
fi

: > "$tmp/others.jsonl"
if [ -n "$data_csv" ]; then
    for peer in pandas dask; do
        mod=$peer
        [ "$peer" = dask ] && mod=dask.dataframe
        if python3 -c "import $mod, pyarrow" 2>/dev/null; then
            log "$peer: scripts/bench/peers/data_$peer.py"
            t0=$SECONDS
            timeout -k 15 "${RAY_BENCH_TIMEOUT:-600}" python3 "$here/data_$peer.py" "$data_csv" \
                >> "$tmp/others.jsonl" || { log "$peer bench reported failures"; status=1; }
            log "$peer side took $((SECONDS - t0))s"
        else
            log "$peer is missing and could not be installed: its rows stay empty"
        fi
    done
fi

if ! python3 -c "import torch" 2>/dev/null; then
    log "installing PyTorch (CPU) with pip for the nn peer"
    python3 -m pip install --quiet torch >&2 || true
fi
if python3 -c "import torch" 2>/dev/null; then
    log "torch: scripts/bench/peers/nn_torch.py"
    timeout -k 15 "${RAY_BENCH_TIMEOUT:-600}" python3 "$here/nn_torch.py" >> "$tmp/others.jsonl" \
        || { log "torch bench reported failures"; status=1; }
else
    log "torch is missing and could not be installed: its rows stay empty"
fi

if ! python3 -c "import xgboost, numpy" 2>/dev/null; then
    log "installing the xgboost Python package with pip for the xgboost peer"
    python3 -m pip install --quiet xgboost numpy >&2 || true
fi
if python3 -c "import xgboost, numpy" 2>/dev/null; then
    log "xgboost: scripts/bench/peers/xgb_python.py"
    timeout -k 15 "${RAY_BENCH_TIMEOUT:-600}" python3 "$here/xgb_python.py" >> "$tmp/others.jsonl" \
        || { log "xgboost bench reported failures"; status=1; }
else
    log "the xgboost Python package is missing and could not be installed: its rows stay empty"
fi

cat "$tmp/luray.jsonl" "$tmp/ray.jsonl" "$tmp/others.jsonl" > "$tmp/all.jsonl"
[ -n "$out" ] && cp "$tmp/all.jsonl" "$out"

python3 - "$tmp/all.jsonl" <<'PY'
import json, sys
# BENCH.md order; names not listed here follow in the order they were printed.
CANON = ["memcpy_gigabytes", "single_client_tasks_sync", "single_client_tasks_async",
         "multi_client_tasks_async", "1_1_actor_calls_sync", "1_1_actor_calls_async",
         "1_1_actor_calls_concurrent", "n_n_actor_calls_async", "single_client_put_calls",
         "single_client_get_calls", "single_client_put_gigabytes", "single_client_get_gigabytes",
         "single_client_wait_1k_refs", "placement_group_create_removal", "cold_run_seconds",
         "idle_node_rss_mb", "idle_worker_rss_mb", "multi_node_tasks_async",
         "object_transfer_gigabytes", "node_death_detection_seconds", "csv_pipeline_seconds",
         "csv_parse_mb_per_s", "map_batches_mb_per_s", "data_streaming_peak_rss_mb",
         "mlp_train_samples_per_s", "xgboost_train_seconds", "allreduce_10mb_ms",
         "serve_noop_requests_per_s", "serve_noop_p99_ms", "serve_noop_nginx_ratio",
         "serve_mlp_predictions_per_s", "serve_mlp_batched_predictions_per_s"]
OTHERS = ["pandas", "dask", "torch", "xgboost-python", "nginx"]
rows, seen = {}, []
for line in open(sys.argv[1]):
    line = line.strip()
    if not line.startswith("{"):
        continue
    rec = json.loads(line)
    name = rec["name"]
    if rec.get("system") == "nginx" and name.startswith("nginx_static_"):
        # nginx's static file under the same wrk command: the ceiling of the serve no-op rows.
        name = "serve_noop_" + name[len("nginx_static_"):]
    if name not in rows:
        rows[name] = {}
        seen.append(name)
    system = rec.get("system")
    side = system if system in ["ray"] + OTHERS else "luray"
    rows[name][side] = rec.get("value")
    rows[name]["unit"] = rec.get("unit", "")
order = [n for n in CANON if n in rows] + [n for n in seen if n not in CANON]
def fmt(v):
    return "-" if v is None else "%.4g" % v
def ratio(l, y):
    return "%.3g" % (l / y) if l is not None and y else "-"
print("%-32s %12s %12s %9s  %s" % ("name", "luray", "ray", "ratio", "unit"))
for name in order:
    r = rows[name]
    if "luray" not in r and "ray" not in r:
        continue
    l, y = r.get("luray"), r.get("ray")
    print("%-32s %12s %12s %9s  %s" % (name, fmt(l), fmt(y), ratio(l, y), r["unit"]))
print("ratio = luray/ray: above 1 is better for rates (/s), below 1 is better for s and MB")
others = [(name, peer) for name in order for peer in OTHERS if peer in rows[name]]
if others:
    print()
    print("%-32s %12s %12s %9s  %s" % ("name [peer]", "luray", "peer", "ratio", "unit"))
    for name, peer in others:
        r = rows[name]
        l, y = r.get("luray"), r[peer]
        print("%-32s %12s %12s %9s  %s" % ("%s [%s]" % (name, peer), fmt(l), fmt(y),
                                          ratio(l, y), r["unit"]))
    print("ratio = luray/peer, read as above")
PY
exit $status
