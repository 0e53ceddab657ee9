#!/usr/bin/env bash
# `make bench-peers`: runs luray's core benchmarks (../run.sh) and the same workloads on Ray
# (ray_micro.py, ray_multinode.py) on this machine, then prints a table: name, luray, ray, ratio (luray/ray).
# Usage: run.sh [FILE]  -- FILE receives every JSON line of both sides.
set -u -o pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
log() { echo "[bench-peers] $*" >&2; }
status=0

log "luray: scripts/bench/run.sh"
t0=$SECONDS
"$here/../run.sh" > "$tmp/luray.jsonl" || { log "luray bench reported failures"; status=1; }
log "luray side took $((SECONDS - t0))s"

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
else
    log "ray or numpy is missing and could not be installed: the Ray column stays empty"
    : > "$tmp/ray.jsonl"
fi

cat "$tmp/luray.jsonl" "$tmp/ray.jsonl" > "$tmp/all.jsonl"
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
         "object_transfer_gigabytes", "node_death_detection_seconds"]
rows, seen = {}, []
for line in open(sys.argv[1]):
    line = line.strip()
    if not line.startswith("{"):
        continue
    rec = json.loads(line)
    name = rec["name"]
    if name not in rows:
        rows[name] = {}
        seen.append(name)
    side = "ray" if rec.get("system") == "ray" else "luray"
    rows[name][side] = rec.get("value")
    rows[name]["unit"] = rec.get("unit", "")
order = [n for n in CANON if n in rows] + [n for n in seen if n not in CANON]
def fmt(v):
    return "-" if v is None else "%.4g" % v
print("%-32s %12s %12s %9s  %s" % ("name", "luray", "ray", "ratio", "unit"))
for name in order:
    r = rows[name]
    l, y = r.get("luray"), r.get("ray")
    ratio = "%.3g" % (l / y) if l is not None and y else "-"
    print("%-32s %12s %12s %9s  %s" % (name, fmt(l), fmt(y), ratio, r["unit"]))
print("ratio = luray/ray: above 1 is better for rates (/s), below 1 is better for s and MB")
PY
exit $status
