#!/usr/bin/env bash
# `make bench-peers`: runs luray's core benchmarks (../run.sh) and the same workloads on Ray
# (ray_micro.py) on this machine, then prints a table: name, luray, ray, ratio (luray/ray).
# Usage: run.sh [FILE]  -- FILE receives every JSON line of both sides.
set -u -o pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
log() { echo "[bench-peers] $*" >&2; }
status=0

log "luray: scripts/bench/run.sh"
"$here/../run.sh" > "$tmp/luray.jsonl" || { log "luray bench reported failures"; status=1; }

if ! python3 -c "import ray, numpy" 2>/dev/null; then
    log "installing the Ray peer's Python packages (ray, numpy) with pip"
    python3 -m pip install --quiet ray numpy >&2 || true
fi
if python3 -c "import ray, numpy" 2>/dev/null; then
    log "ray: scripts/bench/peers/ray_micro.py"
    # Bounded: the whole Ray side gets at most 10 minutes.
    timeout -k 15 "${RAY_BENCH_TIMEOUT:-600}" python3 "$here/ray_micro.py" > "$tmp/ray.jsonl" \
        || { log "ray bench reported failures"; status=1; }
else
    log "ray or numpy is missing and could not be installed: the Ray column stays empty"
    : > "$tmp/ray.jsonl"
fi

cat "$tmp/luray.jsonl" "$tmp/ray.jsonl" > "$tmp/all.jsonl"
[ -n "$out" ] && cp "$tmp/all.jsonl" "$out"

python3 - "$tmp/all.jsonl" <<'PY'
import json, sys
rows, order = {}, []
for line in open(sys.argv[1]):
    line = line.strip()
    if not line.startswith("{"):
        continue
    rec = json.loads(line)
    name = rec["name"]
    if name not in rows:
        rows[name] = {}
        order.append(name)
    side = "ray" if rec.get("system") == "ray" else "luray"
    rows[name][side] = rec.get("value")
    rows[name]["unit"] = rec.get("unit", "")
def fmt(v):
    return "-" if v is None else "%.4g" % v
print("%-32s %12s %12s %8s  %s" % ("name", "luray", "ray", "ratio", "unit"))
for name in order:
    r = rows[name]
    l, y = r.get("luray"), r.get("ray")
    ratio = "%.3g" % (l / y) if l is not None and y else "-"
    print("%-32s %12s %12s %8s  %s" % (name, fmt(l), fmt(y), ratio, r["unit"]))
PY
exit $status
