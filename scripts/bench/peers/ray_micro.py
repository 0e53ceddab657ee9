#!/usr/bin/env python3
"""Ray peer of scripts/bench/run.sh: the same workloads (shared/BENCH.md, Core and ours) on Ray,
one JSON line per figure with "system": "ray"; progress on stderr.

Env: RAY_BENCH_NUM_CPUS (default 2), LURAY_BENCH_SCALE (work multiplier, default 1),
LURAY_BENCH_RUNS (timed runs after a warm-up, default 3).
"""
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import ray

NUM_CPUS = int(os.environ.get("RAY_BENCH_NUM_CPUS", os.environ.get("LURAY_BENCH_NUM_CPUS", "2")))
SCALE = float(os.environ.get("LURAY_BENCH_SCALE", "1") or 1)
RUNS = max(3, int(os.environ.get("LURAY_BENCH_RUNS", "3") or 3))
failed = []


def n(count):
    return max(1, int(round(count * SCALE)))


def log(msg):
    print("[ray-bench] " + msg, file=sys.stderr, flush=True)


def emit(name, value, unit, runs=None, **extra):
    rec = {"name": name, "value": float("%.6g" % value), "unit": unit}
    if runs is not None:
        rec["runs"] = [float("%.6g" % r) for r in runs]
    rec["system"] = "ray"
    rec.update(extra)
    print(json.dumps(rec), flush=True)


WARMUP = 0.1


def rate(name, unit, work, fn, nruns=0, **extra):
    """Warm-up, then RUNS (or nruns, if more) timed runs of fn doing `work` units; prints the
    median of work/s. fn gets the share of its work to do: 1 when timed, WARMUP for the
    warm-up (as bench.lua)."""
    try:
        log(name + ": warm-up")
        fn(WARMUP)
        runs = []
        for _ in range(max(RUNS, nruns)):
            t0 = time.perf_counter()
            fn(1)
            runs.append(work / (time.perf_counter() - t0))
        value = statistics.median(runs)
        log("%s: %.6g %s" % (name, value, unit))
        emit(name, value, unit, runs, **extra)
    except Exception as e:  # one broken figure must not hide the others
        log("%s: FAILED: %r" % (name, e))
        failed.append(name)


@ray.remote
def small_value():
    return 0


@ray.remote
class Actor:
    def small_value(self):
        return 0


@ray.remote
class Client:
    def batch(self, count):
        ray.get([small_value.remote() for _ in range(count)])
        return count


@ray.remote
def work(actors, count):
    ray.get([actors[i % len(actors)].small_value.remote() for i in range(count)])
    return count


COLD_SCRIPT = """
import ray
ray.init(num_cpus=%d, include_dashboard=False, logging_level="ERROR")
@ray.remote
def f():
    return 1
assert ray.get(f.remote()) == 1
ray.shutdown()
""" % NUM_CPUS


def cold_run():
    """Wall time of `python3 -c` a script doing ray.init, one task, ray.shutdown; warm-up + 5."""
    try:
        log("cold_run_seconds")
        runs = []
        for i in range(6):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", COLD_SCRIPT], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
            if i > 0:
                runs.append(time.perf_counter() - t0)
        value = statistics.median(runs)
        log("cold_run_seconds: %.4f s" % value)
        emit("cold_run_seconds", value, "s", runs)
    except Exception as e:
        log("cold_run_seconds: FAILED: %r" % e)
        failed.append("cold_run_seconds")


def proc_table():
    procs = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % name, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open("/proc/%s/status" % name) as f:
                rss = next((int(l.split()[1]) for l in f if l.startswith("VmRSS:")), 0)
        except OSError:
            continue
        procs[int(name)] = (cmd, rss)
    return procs


def idle_rss():
    """RSS of Ray's node daemons (raylet + gcs_server) and of its idle workers."""
    try:
        ray.get([small_value.remote() for _ in range(NUM_CPUS * 2)])
        time.sleep(2)
        procs = proc_table()
        me = os.getpid()
        raylet = sum(r for c, r in procs.values() if "/raylet/raylet " in c + " ")
        gcs = sum(r for c, r in procs.values() if "gcs_server " in c + " ")
        workers = [r for p, (c, r) in procs.items() if c.startswith("ray::") and p != me]
        if not raylet or not workers:
            raise RuntimeError("raylet or idle workers not found in /proc")
        emit("idle_node_rss_mb", (raylet + gcs) / 1024, "MB",
             raylet_mb=round(raylet / 1024, 1), gcs_server_mb=round(gcs / 1024, 1),
             driver_rss_mb=round(procs[me][1] / 1024, 1))
        emit("idle_worker_rss_mb", sum(workers) / len(workers) / 1024, "MB",
             workers=len(workers), min_mb=round(min(workers) / 1024, 1),
             max_mb=round(max(workers) / 1024, 1))
    except Exception as e:
        log("idle_rss: FAILED: %r" % e)
        failed.append("idle_rss")


def main():
    cold_run()
    ray.init(num_cpus=NUM_CPUS, include_dashboard=False, logging_level="ERROR",
             log_to_driver=False, object_store_memory=4_000_000_000)
    idle_rss()

    # tasks. Ray is slow on this 2-core machine, so the loops whose length BENCH.md leaves free
    # (sync calls, repeats of a 1,000 batch, put/get calls) are shorter than luray's; the work
    # BENCH.md defines (batch sizes, 4 x 10,000, 4 x 5,000, 1,000 refs, 800 MB) is the same.
    sync_n = n(500)

    def tasks_sync(share):
        for _ in range(sync_n):
            ray.get(small_value.remote())
    rate("single_client_tasks_sync", "tasks/s", sync_n, tasks_sync)

    batch = n(1000)

    def tasks_async(share):
        for _ in range(2):
            ray.get([small_value.remote() for _ in range(batch)])
    rate("single_client_tasks_async", "tasks/s", batch * 2, tasks_async)

    per_client = n(10000)
    clients = [Client.remote() for _ in range(4)]
    rate("multi_client_tasks_async", "tasks/s", per_client * 4,
         lambda share: ray.get([c.batch.remote(max(1, int(per_client * share))) for c in clients]),
         clients=4, tasks_per_client=per_client)

    nwait = n(1000)

    def wait_1k(share):
        not_ready = [small_value.remote() for _ in range(nwait)]
        fetch_local = True
        for _ in range(nwait):
            _, not_ready = ray.wait(not_ready, fetch_local=fetch_local)
            fetch_local = False
    rate("single_client_wait_1k_refs", "rounds/s", 1, wait_1k, refs=nwait)

    # actors
    a = Actor.remote()

    def actor_sync(share):
        for _ in range(sync_n):
            ray.get(a.small_value.remote())
    rate("1_1_actor_calls_sync", "calls/s", sync_n, actor_sync)

    def actor_async(h):
        def run(share):
            for _ in range(2):
                ray.get([h.small_value.remote() for _ in range(batch)])
        return run
    rate("1_1_actor_calls_async", "calls/s", batch * 2, actor_async(a))
    c = Actor.options(max_concurrency=16).remote()
    rate("1_1_actor_calls_concurrent", "calls/s", batch * 2, actor_async(c))

    nactors = max(1, NUM_CPUS // 2)
    actors = [Actor.remote() for _ in range(nactors)]
    calls = n(5000)
    rate("n_n_actor_calls_async", "calls/s", 4 * calls,
         lambda share: ray.get([work.remote(actors, max(1, int(calls * share)))
                                for _ in range(4)]),
         actors=nactors, tasks=4, calls_per_task=calls)

    # objects
    small_n = n(2000)

    def put_calls(share):
        for _ in range(small_n):
            ray.put(0)
    rate("single_client_put_calls", "puts/s", small_n, put_calls)

    small = ray.put(0)

    def get_calls(share):
        for _ in range(small_n):
            ray.get(small)
    rate("single_client_get_calls", "gets/s", small_n, get_calls)

    elems = n(100_000_000)
    gb = elems * 8 / 1e9
    big = np.zeros(elems, dtype=np.int64)
    big[::512] = 1  # real memory, not the zero page (as core_objects.lua)
    rate("single_client_put_gigabytes", "GB/s", gb, lambda share: ray.put(big), nruns=7,
         bytes=elems * 8, source="pages touched")
    del big
    stored = ray.put(np.zeros(elems, dtype=np.int64))
    gets = 10

    def get_big(share):
        for _ in range(gets):
            t = ray.get(stored)
            assert len(t) == elems
            del t
    rate("single_client_get_gigabytes", "GB/s", gb * gets, get_big,
         bytes=elems * 8, gets_per_run=gets)
    del stored

    # placement groups, as ray_perf: create 100 one-bundle groups, wait for them, remove them
    # (small bundles so that all 100 fit at once)
    from ray.util.placement_group import placement_group, remove_placement_group

    def pgs(share):
        groups = [placement_group([{"CPU": 0.001}]) for _ in range(100)]
        for pg in groups:
            pg.wait(timeout_seconds=30)
        for pg in groups:
            remove_placement_group(pg)
    rate("placement_group_create_removal", "groups/s", 100, pgs)

    ray.shutdown()
    if failed:
        log("FAILED: " + " ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
