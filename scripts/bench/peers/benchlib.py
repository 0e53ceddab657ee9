"""Pieces shared by the data peers (data_pandas.py, data_dask.py, data_ray.py): progress lines on
stderr, one JSON line per figure on stdout, a warm-up before the timed runs, and failed figures
counted without hiding the others.
"""
import json
import os
import statistics
import sys
import time

RUNS = max(3, int(os.environ.get("LURAY_BENCH_RUNS", "3") or 3))


def csv_arg(script):
    """The CSV path of the command line, or None after saying on stderr what is wrong."""
    if len(sys.argv) != 2:
        print("usage: %s CSV" % script, file=sys.stderr)
        return None
    path = sys.argv[1]
    if not os.path.isfile(path):
        print("%s: no such file: %s" % (script, path), file=sys.stderr)
        return None
    return path


class Bench:
    """The figures of one peer system, named by `system` in every line it prints."""

    def __init__(self, system):
        self.system = system
        self.failed = []

    def log(self, msg):
        print("[%s-bench] %s" % (self.system, msg), file=sys.stderr, flush=True)

    def emit(self, name, value, unit, runs=None, **extra):
        rec = {"name": name, "value": float("%.6g" % value), "unit": unit}
        if runs is not None:
            rec["runs"] = [float("%.6g" % r) for r in runs]
        rec["system"] = self.system
        rec.update(extra)
        print(json.dumps(rec), flush=True)

    def timed(self, name, fn):
        """A warm-up call of fn, then RUNS timed calls; returns the list of seconds."""
        self.log(name + ": warm-up")
        fn()
        runs = []
        for _ in range(RUNS):
            t0 = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - t0)
        return runs

    def figure(self, name, fn):
        """Runs one figure; a failure is logged and counted so it does not hide the others."""
        try:
            fn()
        except Exception as e:
            self.log("%s: FAILED: %r" % (name, e))
            self.failed.append(name)

    def seconds(self, name, runs, **extra):
        """Reports the median of runs, in seconds."""
        value = statistics.median(runs)
        self.log("%s: %.4f s" % (name, value))
        self.emit(name, value, "s", runs, **extra)

    def mb_per_s_per_core(self, name, rates, **extra):
        """Reports the median of rates, in MB/s per core."""
        value = statistics.median(rates)
        self.log("%s: %.4g MB/s per core" % (name, value))
        self.emit(name, value, "MB/s", rates, per_core=True, **extra)

    def exit_code(self):
        """0, or 1 after naming the figures that failed."""
        if self.failed:
            self.log("FAILED: " + " ".join(self.failed))
            return 1
        return 0
