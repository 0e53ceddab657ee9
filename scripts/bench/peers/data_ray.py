#!/usr/bin/env python3
"""Ray Data peer of scripts/bench/data.lua, on the CSV that scripts/bench/gen_csv.lua wrote. One
JSON line per figure with "system": "ray"; progress on stderr.

- csv_pipeline_seconds: read_csv, filter x > 0.5, z = x * y, groupby("cat").mean("z"),
  write_csv. The filter and the new column use Ray Data's expressions (filter(expr=...),
  with_column), which run as Arrow compute kernels inside the fused read task: the fastest form
  Ray 2.x offers and the one its docs point to. Rays without expressions get map_batches over
  pyarrow batches instead (the "api" field says which ran). The groupby uses the pull-based
  sort shuffle into one partition per CPU: Ray's default on this 2-core machine (SHUFFLE_V2,
  200 partitions) took 16-24 s per run against 3.5-4 s for this setting, so a user would tune
  it (RAY_BENCH_SHUFFLE=default keeps Ray's default; the "shuffle" field says which ran).
- csv_parse_mb_per_s: read_csv + count(): file bytes per second, divided by the cluster's CPUs.
- map_batches_mb_per_s: map_batches computing x * 2 + y over numpy batches of two float64
  columns (materialized first), input column bytes per second, divided by the cluster's CPUs.

Usage: data_ray.py CSV    Env: RAY_BENCH_NUM_CPUS (default 2), LURAY_BENCH_SCALE (work
multiplier of map_batches, default 1), LURAY_BENCH_RUNS (timed runs after a warm-up, default 3),
RAY_BENCH_SHUFFLE (a ray.data.context.ShuffleStrategy value, or "default").
"""
import logging
import os
import shutil
import sys
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray

from benchlib import Bench, csv_arg

NUM_CPUS = int(os.environ.get("RAY_BENCH_NUM_CPUS", os.environ.get("LURAY_BENCH_NUM_CPUS", "2")))
SCALE = float(os.environ.get("LURAY_BENCH_SCALE", "1") or 1)
bench = Bench("ray")


HAS_EXPRESSIONS = hasattr(ray.data.Dataset, "with_column")
SHUFFLE = os.environ.get("RAY_BENCH_SHUFFLE", "sort_shuffle_pull_based")
GROUP_PARTITIONS = None if SHUFFLE == "default" else NUM_CPUS


def set_shuffle(ctx):
    """Selects the groupby's shuffle; returns its name for the JSON line."""
    if SHUFFLE == "default":
        return str(getattr(ctx, "shuffle_strategy", "default"))
    from ray.data.context import ShuffleStrategy
    ctx.shuffle_strategy = ShuffleStrategy(SHUFFLE)
    return SHUFFLE


def filter_and_add(ds):
    if HAS_EXPRESSIONS:
        from ray.data.expressions import col
        return ds.filter(expr=col("x") > 0.5).with_column("z", col("x") * col("y"))

    def step(t):
        t = t.filter(pc.greater(t["x"], 0.5))
        return t.append_column("z", pc.multiply(t["x"], t["y"]))
    return ds.map_batches(step, batch_format="pyarrow")


def pipeline(path, out_root):
    out = tempfile.mkdtemp(dir=out_root)
    ds = filter_and_add(ray.data.read_csv(path))
    ds.groupby("cat", num_partitions=GROUP_PARTITIONS).mean("z").write_csv(out)
    written = os.listdir(out)
    if not written:
        raise RuntimeError("write_csv wrote no file")


def csv_figures(path, shuffle):
    nbytes = os.path.getsize(path)
    out_root = tempfile.mkdtemp(prefix="bench-ray-")
    api = "expressions" if HAS_EXPRESSIONS else "map_batches(pyarrow)"
    try:
        def run_pipeline():
            runs = bench.timed("csv_pipeline_seconds", lambda: pipeline(path, out_root))
            bench.seconds("csv_pipeline_seconds", runs, cpus=NUM_CPUS, api=api, shuffle=shuffle,
                          group_partitions=GROUP_PARTITIONS, file_bytes=nbytes)
        bench.figure("csv_pipeline_seconds", run_pipeline)
    finally:
        shutil.rmtree(out_root, ignore_errors=True)

    def run_parse():
        runs = bench.timed("csv_parse_mb_per_s", lambda: ray.data.read_csv(path).count())
        rates = [nbytes / 1e6 / s / NUM_CPUS for s in runs]
        bench.mb_per_s_per_core("csv_parse_mb_per_s", rates, cpus=NUM_CPUS, file_bytes=nbytes)
    bench.figure("csv_parse_mb_per_s", run_parse)


def map_batches_figure():
    rows = max(1, int(round(10_000_000 * SCALE)))
    blocks = 4 * NUM_CPUS
    rng = np.random.default_rng(1)
    table = pa.table({"x": rng.random(rows), "y": rng.random(rows)})
    src = ray.data.from_arrow(table).repartition(blocks).materialize()
    del table
    in_mb = rows * 16 / 1e6

    def arith(b):
        return {"z": b["x"] * 2 + b["y"]}

    def run():
        out = src.map_batches(arith, batch_format="numpy").materialize()
        if out.count() != rows:
            raise RuntimeError("map_batches lost rows")
        del out

    runs = bench.timed("map_batches_mb_per_s", run)
    rates = [in_mb / s / NUM_CPUS for s in runs]
    bench.mb_per_s_per_core("map_batches_mb_per_s", rates, cpus=NUM_CPUS, rows=rows,
                            blocks=blocks, input_bytes=rows * 16, expr="x * 2 + y")


def main():
    path = csv_arg("data_ray.py")
    if path is None:
        return 2
    ray.init(num_cpus=NUM_CPUS, include_dashboard=False, logging_level="ERROR",
             log_to_driver=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    # Ray Data logs every execution at INFO on stderr; the bench's own progress lines suffice.
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    try:
        shuffle = set_shuffle(ctx)
        csv_figures(path, shuffle)
        bench.figure("map_batches_mb_per_s", map_batches_figure)
    finally:
        ray.shutdown()
    return bench.exit_code()


if __name__ == "__main__":
    sys.exit(main())
