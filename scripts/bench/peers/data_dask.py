#!/usr/bin/env python3
"""Dask peer of scripts/bench/data.lua: the CSV pipeline of shared/BENCH.md (read, filter
x > 0.5, z = x * y, groupby cat mean z, write) and the CSV parse rate, on the CSV that
scripts/bench/gen_csv.lua wrote. One JSON line per figure with "system": "dask"; progress on
stderr.

Scheduler: dask.dataframe's default, its local thread pool, with 2 threads (DASK_BENCH_SCHEDULER
=threads, the default): with no distributed Client that is what `compute()` uses, and on this
2-core machine it measured faster than a distributed LocalCluster(n_workers=2,
threads_per_worker=1), which DASK_BENCH_SCHEDULER=distributed selects (0.53 s against 0.39 s for
the pipeline). A LocalCluster starts before the timed runs, as ray.init and luray's embedded
cluster do on the other sides.

Partitions: read_csv's default blocksize (64 MB) makes the 32 MB file a single partition, which
leaves one of the two threads idle; the blocksize is set so the file splits into one partition
per thread (DASK_BENCH_BLOCKSIZE, in bytes, to override), the fastest split measured here.

Usage: data_dask.py CSV    Env: LURAY_BENCH_RUNS (timed runs after a warm-up, default 3),
DASK_BENCH_NUM_CPUS (workers, default 2).
"""
import os
import shutil
import sys
import tempfile

import dask
import dask.dataframe as dd

from benchlib import Bench, csv_arg

NUM_CPUS = int(os.environ.get("DASK_BENCH_NUM_CPUS", os.environ.get("LURAY_BENCH_NUM_CPUS", "2")))
SCHEDULER = os.environ.get("DASK_BENCH_SCHEDULER", "threads")
bench = Bench("dask")


def pipeline(path, blocksize, out_root):
    out = tempfile.mkdtemp(dir=out_root)
    df = dd.read_csv(path, blocksize=blocksize)
    df = df[df["x"] > 0.5]
    df = df.assign(z=df["x"] * df["y"])
    means = df.groupby("cat")["z"].mean()
    # the 20-row result comes back as one pandas Series and is written as one file
    # (dask's to_csv of a 1-partition frame would do the same with more scheduling)
    result = means.compute()
    result.to_csv(os.path.join(out, "part-0.csv"))
    if len(result) == 0:
        raise RuntimeError("the pipeline produced no groups")


def start_scheduler():
    if SCHEDULER == "distributed":
        from distributed import Client, LocalCluster
        cluster = LocalCluster(n_workers=NUM_CPUS, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        return Client(cluster), cluster
    if SCHEDULER == "threads":
        dask.config.set(scheduler="threads", num_workers=NUM_CPUS)
        return None, None
    raise ValueError("DASK_BENCH_SCHEDULER must be distributed or threads, not %r" % SCHEDULER)


def main():
    path = csv_arg("data_dask.py")
    if path is None:
        return 2
    nbytes = os.path.getsize(path)
    blocksize = int(os.environ.get("DASK_BENCH_BLOCKSIZE", "0") or 0) or \
        max(1 << 20, nbytes // NUM_CPUS + 1)
    client, cluster = start_scheduler()
    out_root = tempfile.mkdtemp(prefix="bench-dask-")
    extra = {"cpus": NUM_CPUS, "scheduler": SCHEDULER, "blocksize": blocksize,
             "file_bytes": nbytes}

    def run_pipeline():
        runs = bench.timed("csv_pipeline_seconds", lambda: pipeline(path, blocksize, out_root))
        bench.seconds("csv_pipeline_seconds", runs, **extra)

    def run_parse():
        runs = bench.timed("csv_parse_mb_per_s",
                           lambda: len(dd.read_csv(path, blocksize=blocksize)))
        rates = [nbytes / 1e6 / s / NUM_CPUS for s in runs]
        bench.mb_per_s_per_core("csv_parse_mb_per_s", rates, **extra)

    try:
        bench.figure("csv_pipeline_seconds", run_pipeline)
        bench.figure("csv_parse_mb_per_s", run_parse)
    finally:
        shutil.rmtree(out_root, ignore_errors=True)
        if client is not None:
            client.close()
            cluster.close()
    return bench.exit_code()


if __name__ == "__main__":
    sys.exit(main())
