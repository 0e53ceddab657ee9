#!/usr/bin/env python3
"""PyTorch (CPU) peer of scripts/bench/nn.lua: mlp_train_samples_per_s, one epoch of an MLP
784-256-10 (ReLU) over 60,000 synthetic samples, batch 128, SGD lr 0.01, cross-entropy, on 2
threads (torch.set_num_threads(2)). The batches are slices of one tensor, as nn.lua's are. One
JSON line with "system": "torch"; progress on stderr.

Usage: nn_torch.py    Env: LURAY_BENCH_SCALE (sample count multiplier), LURAY_BENCH_RUNS
(timed runs after a warm-up, default 3). Needs `pip install torch`.
"""
import json
import os
import statistics
import sys
import time

import torch

RUNS = max(3, int(os.environ.get("LURAY_BENCH_RUNS", "3") or 3))
SCALE = float(os.environ.get("LURAY_BENCH_SCALE", "1") or 1)
SAMPLES = max(1, int(60000 * SCALE + 0.5))
BATCH = 128
THREADS = int(os.environ.get("LURAY_NN_THREADS", "2") or 2)
WARMUP = 0.1
SYSTEM = "torch"


def log(msg):
    print("[%s-bench] %s" % (SYSTEM, msg), file=sys.stderr, flush=True)


def emit(name, value, unit, runs, **extra):
    rec = {"name": name, "value": float("%.6g" % value), "unit": unit,
           "runs": [float("%.6g" % r) for r in runs], "system": SYSTEM}
    rec.update(extra)
    print(json.dumps(rec), flush=True)


def main():
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    x_all = torch.randn(SAMPLES, 784)
    y_all = torch.randint(0, 10, (SAMPLES,))
    model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = torch.nn.CrossEntropyLoss()

    def epoch(share):
        n = max(BATCH, int(SAMPLES * share))
        for first in range(0, n, BATCH):
            last = min(first + BATCH, n)
            x, y = x_all[first:last], y_all[first:last]
            loss = loss_fn(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return n

    name = "mlp_train_samples_per_s"
    log("%s: warm-up" % name)
    epoch(WARMUP)
    runs = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        n = epoch(1)
        runs.append(n / (time.perf_counter() - t0))
    value = statistics.median(runs)
    log("%s: %.6g samples/s" % (name, value))
    emit(name, value, "samples/s", runs, batch_size=BATCH, threads=THREADS, samples=SAMPLES,
         torch_version=torch.__version__)


if __name__ == "__main__":
    main()
