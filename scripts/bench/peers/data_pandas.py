#!/usr/bin/env python3
"""pandas peer of scripts/bench/data.lua: the CSV pipeline of shared/BENCH.md (read, filter
x > 0.5, z = x * y, groupby cat mean z, write) and the CSV parse rate, on the CSV that
scripts/bench/gen_csv.lua wrote. One JSON line per figure with "system": "pandas"; progress on
stderr. pandas is single-threaded: its read_csv uses the default C parser, as a user's would.

Usage: data_pandas.py CSV    Env: LURAY_BENCH_RUNS (timed runs after a warm-up, default 3).
"""
import os
import shutil
import sys
import tempfile

import pandas as pd

from benchlib import Bench, csv_arg

bench = Bench("pandas")


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
    path = csv_arg("data_pandas.py")
    if path is None:
        return 2
    nbytes = os.path.getsize(path)
    out_root = tempfile.mkdtemp(prefix="bench-pandas-")

    def run_pipeline():
        runs = bench.timed("csv_pipeline_seconds", lambda: pipeline(path, out_root))
        bench.seconds("csv_pipeline_seconds", runs, cpus=1, file_bytes=nbytes)

    def run_parse():
        runs = bench.timed("csv_parse_mb_per_s", lambda: len(pd.read_csv(path)))
        rates = [nbytes / 1e6 / s for s in runs]
        bench.mb_per_s_per_core("csv_parse_mb_per_s", rates, cpus=1, file_bytes=nbytes)

    try:
        bench.figure("csv_pipeline_seconds", run_pipeline)
        bench.figure("csv_parse_mb_per_s", run_parse)
    finally:
        shutil.rmtree(out_root, ignore_errors=True)
    return bench.exit_code()


if __name__ == "__main__":
    sys.exit(main())
