#!/usr/bin/env python3
"""pandas peer of scripts/bench/data.lua: the CSV pipeline of shared/BENCH.md (read, filter
x > 0.5, z = x * y, groupby cat mean z, write) and the CSV parse rate, on the CSV that
scripts/bench/gen_csv.lua wrote. One JSON line per figure with "system": "pandas"; progress on
stderr. pandas is single-threaded: its read_csv uses the default C parser, as a user's would.

Usage: data_pandas.py CSV    Env: LURAY_BENCH_RUNS (timed runs after a warm-up, default 3).
"""
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

import pandas as pd

RUNS = max(3, int(os.environ.get("LURAY_BENCH_RUNS", "3") or 3))
SYSTEM = "pandas"
failed = []


def log(msg):
    print("[%s-bench] %s" % (SYSTEM, msg), file=sys.stderr, flush=True)


def emit(name, value, unit, runs=None, **extra):
    rec = {"name": name, "value": float("%.6g" % value), "unit": unit}
    if runs is not None:
        rec["runs"] = [float("%.6g" % r) for r in runs]
    rec["system"] = SYSTEM
    rec.update(extra)
    print(json.dumps(rec), flush=True)


def timed(name, fn):
    """A warm-up call of fn, then RUNS timed calls; returns the list of seconds."""
    log(name + ": warm-up")
    fn()
    runs = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return runs


def pipeline(path, out_root):
    out = tempfile.mkdtemp(dir=out_root)
    df = pd.read_csv(path)
    df = df[df["x"] > 0.5]
    df = df.assign(z=df["x"] * df["y"])
    means = df.groupby("cat")["z"].mean()
    means.to_csv(os.path.join(out, "part-0.csv"))
    if len(means) == 0:
        raise RuntimeError("the pipeline produced no groups")


def main():
    if len(sys.argv) != 2:
        print("usage: data_pandas.py CSV", file=sys.stderr)
        return 2
    path = sys.argv[1]
    if not os.path.isfile(path):
        print("data_pandas.py: no such file: %s" % path, file=sys.stderr)
        return 2
    nbytes = os.path.getsize(path)
    out_root = tempfile.mkdtemp(prefix="bench-pandas-")
    try:
        try:
            runs = timed("csv_pipeline_seconds", lambda: pipeline(path, out_root))
            value = statistics.median(runs)
            log("csv_pipeline_seconds: %.4f s" % value)
            emit("csv_pipeline_seconds", value, "s", runs, cpus=1, file_bytes=nbytes)
        except Exception as e:  # one broken figure must not hide the others
            log("csv_pipeline_seconds: FAILED: %r" % e)
            failed.append("csv_pipeline_seconds")

        try:
            runs = timed("csv_parse_mb_per_s", lambda: len(pd.read_csv(path)))
            rates = [nbytes / 1e6 / s for s in runs]
            value = statistics.median(rates)
            log("csv_parse_mb_per_s: %.4g MB/s per core" % value)
            emit("csv_parse_mb_per_s", value, "MB/s", rates, per_core=True, cpus=1,
                 file_bytes=nbytes)
        except Exception as e:
            log("csv_parse_mb_per_s: FAILED: %r" % e)
            failed.append("csv_parse_mb_per_s")
    finally:
        shutil.rmtree(out_root, ignore_errors=True)
    if failed:
        log("FAILED: " + " ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
