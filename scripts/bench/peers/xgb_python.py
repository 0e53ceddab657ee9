#!/usr/bin/env python3
"""xgboost Python package peer of scripts/bench/xgb.lua: the same 100,000 x 28 synthetic binary
set (the splitmix64 stream and sums of xgb.lua, so the same rows and labels; the positives and
sum_f0 fields let the two be compared), hist, depth 6, eta 0.3, 100 rounds, nthread 2. Each
timed run builds a fresh DMatrix (untimed, reported as xgboost_dmatrix_seconds) and times
xgb.train on it. One JSON line per figure with "system": "xgboost-python"; progress on stderr.

Usage: xgb_python.py    (pip install xgboost numpy)
Env: LURAY_BENCH_SCALE (rows multiplier, default 1), LURAY_BENCH_RUNS (timed runs, default 3).
"""
import json
import os
import statistics
import sys
import time

import numpy as np
import xgboost as xgb

SCALE = float(os.environ.get("LURAY_BENCH_SCALE", "1") or 1)
RUNS = max(3, int(os.environ.get("LURAY_BENCH_RUNS", "3") or 3))
ROWS = max(1, int(100000 * SCALE + 0.5))
FEATURES = 28
ROUNDS = 100
SEED = 20240601
PARAMS = {"objective": "binary:logistic", "tree_method": "hist", "max_depth": 6, "eta": 0.3,
          "nthread": 2}
SYSTEM = "xgboost-python"


def log(msg):
    print("[xgboost-python-bench] %s" % msg, file=sys.stderr, flush=True)


def emit(name, value, unit, runs, **extra):
    rec = {"name": name, "value": float("%.6g" % value), "unit": unit,
           "runs": [float("%.6g" % r) for r in runs], "system": SYSTEM}
    rec.update(extra)
    print(json.dumps(rec), flush=True)


def splitmix_uniform(seed, n):
    """The first n values of xgb.lua's splitmix64 stream as floats in [0, 1)."""
    mask = np.uint64(0xFFFFFFFFFFFFFFFF)
    k = np.arange(1, n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = (np.uint64(seed) + k * np.uint64(0x9E3779B97F4A7C15)) & mask
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


def make_data():
    """Rows of 28 features then one noise draw, each 2u - 1; the label sums left to right as
    xgb.lua does, so rounding is the same and so are the labels."""
    u = splitmix_uniform(SEED, ROWS * (FEATURES + 1)).reshape(ROWS, FEATURES + 1) * 2 - 1
    x = np.ascontiguousarray(u[:, :FEATURES])
    z = np.zeros(ROWS)
    for j in range(FEATURES):
        z = z + ((j % 7) - 3) / 3 * x[:, j]
    z = z + x[:, 0] * x[:, 1]
    z = z + u[:, FEATURES] * 0.5
    y = (z > 0).astype(np.float32)
    return x, y


def main():
    log("making %d x %d rows" % (ROWS, FEATURES))
    x, y = make_data()
    positives = int(y.sum())
    sum0 = 0.0
    for v in x[:, 0]:  # left to right, as the Lua side sums
        sum0 += float(v)
    log("%d positives, sum of f0 %.6f, xgboost %s" % (positives, sum0, xgb.__version__))

    log("xgboost_train_seconds: warm-up")
    xgb.train(PARAMS, xgb.DMatrix(x, label=y, nthread=PARAMS["nthread"]), 10)
    train_runs, dm_runs = [], []
    bst = None
    for i in range(RUNS):
        t0 = time.perf_counter()
        dm = xgb.DMatrix(x, label=y, nthread=PARAMS["nthread"])
        t1 = time.perf_counter()
        bst = xgb.train(PARAMS, dm, ROUNDS)
        t2 = time.perf_counter()
        dm_runs.append(t1 - t0)
        train_runs.append(t2 - t1)
        log("xgboost_train_seconds: run %d: %.3f s (DMatrix %.3f s)" % (i + 1, t2 - t1, t1 - t0))
    acc = float(((bst.predict(xgb.DMatrix(x)) > 0.5) == (y > 0.5)).mean())
    if acc < 0.8:
        log("training accuracy %.3f: the model did not learn" % acc)
        return 1
    value = statistics.median(train_runs)
    log("xgboost_train_seconds: %.4f s" % value)
    emit("xgboost_train_seconds", value, "s", train_runs, rows=ROWS, features=FEATURES,
         rounds=ROUNDS, nthread=PARAMS["nthread"], max_depth=PARAMS["max_depth"],
         positives=positives, sum_f0="%.6f" % sum0, xgboost=xgb.__version__,
         train_accuracy="%.4f" % acc)
    emit("xgboost_dmatrix_seconds", statistics.median(dm_runs), "s", dm_runs, rows=ROWS,
         features=FEATURES)
    return 0


if __name__ == "__main__":
    sys.exit(main())
