#!/usr/bin/env python3
"""Ray peer of luray's multi-node figures (shared/BENCH.md, Ours): multi_node_tasks_async,
object_transfer_gigabytes and node_death_detection_seconds on a local three-node Ray cluster
(ray.cluster_utils.Cluster: a head and two more nodes, one CPU and their own object store each),
one JSON line per figure with "system": "ray"; progress on stderr.

Env: LURAY_BENCH_SCALE (work multiplier, default 1), LURAY_BENCH_RUNS (timed runs after a
warm-up, default 3), RAY_BENCH_STORE_BYTES (object store of each of the three nodes, default 2e9).
Exit status 2 when the cluster cannot be started, 1 when a figure failed.
"""
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time

# A private temporary root, set before Ray is imported: Ray keeps its sessions and the address
# file that a plain ray.init() connects to (ray_current_cluster) under it, so a concurrent
# ray_micro.py can neither join this cluster nor be joined by it.
TMP_ROOT = tempfile.mkdtemp(prefix="raymn-")
os.environ["RAY_TMPDIR"] = TMP_ROOT

import numpy as np  # noqa: E402
import ray  # noqa: E402
from ray._private import ray_constants  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy  # noqa: E402

SCALE = float(os.environ.get("LURAY_BENCH_SCALE", "1") or 1)
RUNS = max(3, int(os.environ.get("LURAY_BENCH_RUNS", "3") or 3))
STORE_BYTES = int(float(os.environ.get("RAY_BENCH_STORE_BYTES", "2e9") or 2e9))
DEATH_TIMEOUT_S = 120.0
DEATH_POLL_S = 0.05
failed = []

# The figures go to the original stdout; everything else written to fd 1 from here on (the
# driver prints the raylets' death notices there) goes to stderr.
RESULTS = os.fdopen(os.dup(1), "w")
sys.stdout.flush()
os.dup2(2, 1)


def n(count):
    return max(1, int(round(count * SCALE)))


def log(msg):
    print("[ray-multinode] " + msg, file=sys.stderr, flush=True)


def emit(name, value, unit, runs=None, **extra):
    rec = {"name": name, "value": float("%.6g" % value), "unit": unit}
    if runs is not None:
        rec["runs"] = [float("%.6g" % r) for r in runs]
    rec["system"] = "ray"
    rec.update(extra)
    print(json.dumps(rec), file=RESULTS, flush=True)


WARMUP = 0.1


def rate(name, unit, work, fn, **extra):
    """Warm-up, then RUNS timed runs of fn doing `work` units; prints the median of work/s.
    fn gets the share of its work to do (1 timed, WARMUP for the warm-up) and returns the
    seconds to count, or None to count its whole call."""
    try:
        log(name + ": warm-up")
        fn(WARMUP)
        runs = []
        for _ in range(RUNS):
            t0 = time.perf_counter()
            timed = fn(1)
            runs.append(work / (timed if timed is not None else time.perf_counter() - t0))
        value = statistics.median(runs)
        log("%s: %.6g %s" % (name, value, unit))
        emit(name, value, unit, runs, **extra)
    except Exception as e:  # one broken figure must not hide the others
        log("%s: FAILED: %r" % (name, e))
        failed.append(name)


# --- processes: everything this script starts is a descendant of it (or was, before a kill -9
# orphaned it), and is found, waited for and if need be killed by pid and start time.

def proc_stat(pid):
    """(ppid, start time) of pid from /proc, or None once it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[1]), int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def descendants(root):
    """{pid: start time} of every process below root."""
    children = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(int(name))
            if st:
                children.setdefault(st[0], []).append((int(name), st[1]))
    found, todo = {}, [root]
    while todo:
        for pid, start in children.get(todo.pop(), []):
            if pid not in found:
                found[pid] = start
                todo.append(pid)
    return found


def same_process_alive(pid, start):
    st = proc_stat(pid)
    if st is None:
        return False
    try:
        with open("/proc/%d/status" % pid) as f:
            if any(l.startswith("State:") and "Z" in l.split()[1] for l in f):
                return False  # a zombie is gone, only its parent has to reap it
    except OSError:
        return False
    return st[1] == start


def reap_leftovers(started, wait_s=10.0):
    """Waits for the processes in `started` to exit, SIGKILLs any still there after wait_s;
    returns the pids it had to kill."""
    deadline = time.monotonic() + wait_s
    alive = dict(started)
    while alive and time.monotonic() < deadline:
        alive = {p: s for p, s in alive.items() if same_process_alive(p, s)}
        if alive:
            time.sleep(0.2)
    killed = []
    for pid, start in alive.items():
        if same_process_alive(pid, start):
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except OSError:
                pass
    return killed


# --- workloads

@ray.remote
def small_value():
    return 0


@ray.remote
def where():
    return ray.get_runtime_context().get_node_id()


@ray.remote
def produce(nbytes):
    return np.ones(nbytes, dtype=np.uint8)  # every page written: real memory, not the zero page


@ray.remote
def consume(arr):
    return len(arr), int(arr[:16].sum())


def pinned(node_id):
    return NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)


def multi_node_tasks(node_ids):
    """As single_client_tasks_async (batches of 1,000 no-op tasks, then get them all), SPREAD
    over the three nodes. The warm-up also checks that SPREAD reaches every node (it does once
    each node has a worker up)."""
    spread = small_value.options(scheduling_strategy="SPREAD")
    batch, batches = n(1000), 3

    def run(share):
        if share == WARMUP:
            for _ in range(5):
                seen = set(ray.get([where.options(scheduling_strategy="SPREAD").remote()
                                    for _ in range(300)]))
                if seen == set(node_ids):
                    break
            else:
                raise RuntimeError("SPREAD reached %d of %d nodes" % (len(seen), len(node_ids)))
        for _ in range(batches):
            ray.get([spread.remote() for _ in range(max(1, int(batch * share)))])
    rate("multi_node_tasks_async", "tasks/s", batch * batches, run,
         nodes=len(node_ids), batch=batch, batches=batches)


def object_transfer(node_a, node_b):
    """A 1 GB uint8 array made by a task pinned to node A (so it lives in A's store), then
    pulled by a task pinned to node B that takes it as its argument. Timed: from the consumer's
    submission to its result. A fresh object every run, so B never holds a copy already."""
    nbytes = n(1_000_000_000)
    make, use = produce.options(scheduling_strategy=pinned(node_a)), \
        consume.options(scheduling_strategy=pinned(node_b))

    def run(share):
        size = max(1, int(nbytes * share))
        ref = make.remote(size)
        ready, _ = ray.wait([ref], timeout=120, fetch_local=False)
        if not ready:
            raise RuntimeError("the producer on node A did not finish in 120 s")
        t0 = time.perf_counter()
        length, head = ray.get(use.remote(ref), timeout=120)
        elapsed = time.perf_counter() - t0
        if length != size or head != min(16, size):
            raise RuntimeError("consumer on B saw %d bytes summing to %d" % (length, head))
        del ref
        return elapsed
    rate("object_transfer_gigabytes", "GB/s", nbytes / 1e9, run, bytes=nbytes,
         source_node=node_a[:8], dest_node=node_b[:8])


def node_alive(node_id):
    for entry in ray.nodes():
        if entry["NodeID"] == node_id:
            return entry["Alive"]
    return None


def node_death(cluster, started):
    """A fourth node is added, its raylet killed with SIGKILL, and ray.nodes() polled every
    50 ms until the head marks it Alive=False. Ray's default settings: the GCS health check
    probes each raylet every health_check_period_ms (3000) with health_check_timeout_ms
    (10000), and declares the node dead after health_check_failure_threshold (5) failures;
    _system_config={"health_check_period_ms": ..., "health_check_failure_threshold": ...} on
    the head (or RAY_health_check_period_ms etc. in its environment) shortens it. No warm-up:
    the figure is set by those timers, not by a cold cache."""
    name = "node_death_detection_seconds"
    cfg = ray._raylet.Config
    try:
        runs = []
        for i in range(RUNS):
            node = cluster.add_node(num_cpus=1, object_store_memory=100 * 1024 * 1024)
            try:
                deadline = time.monotonic() + 30
                while node_alive(node.node_id) is not True:
                    if time.monotonic() > deadline:
                        raise RuntimeError("node %s not alive after 30 s" % node.node_id[:8])
                    time.sleep(DEATH_POLL_S)
                raylet = node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process
                started.update(descendants(os.getpid()))
                t0 = time.perf_counter()
                os.kill(raylet.pid, signal.SIGKILL)
                while node_alive(node.node_id) is not False:
                    if time.perf_counter() - t0 > DEATH_TIMEOUT_S:
                        raise RuntimeError("node %s still alive %.0f s after kill -9 of its "
                                           "raylet" % (node.node_id[:8], DEATH_TIMEOUT_S))
                    time.sleep(DEATH_POLL_S)
                runs.append(time.perf_counter() - t0)
                log("%s: run %d: %.3f s" % (name, i + 1, runs[-1]))
            finally:
                cluster.remove_node(node, allow_graceful=False)
        value = statistics.median(runs)
        log("%s: %.4g s" % (name, value))
        emit(name, value, "s", runs, poll_ms=int(DEATH_POLL_S * 1000),
             health_check_period_ms=cfg.health_check_period_ms(),
             health_check_timeout_ms=cfg.health_check_timeout_ms(),
             health_check_failure_threshold=cfg.health_check_failure_threshold())
    except Exception as e:
        log("%s: FAILED: %r" % (name, e))
        failed.append(name)


def main():
    t_start = time.perf_counter()
    started = {}
    cluster = None
    status = 0
    try:
        try:
            log("starting a head and two nodes (1 CPU, %.3g GB object store each) under %s"
                % (STORE_BYTES / 1e9, TMP_ROOT))
            node_args = dict(num_cpus=1, object_store_memory=STORE_BYTES)
            cluster = Cluster(initialize_head=True, head_node_args=dict(
                node_args, include_dashboard=False))
            node_a = cluster.add_node(**node_args)
            node_b = cluster.add_node(**node_args)
            cluster.wait_for_nodes(timeout=60)
            ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
        except Exception as e:
            log("FAILED to start a local Ray cluster (ray %s): %r" % (ray.__version__, e))
            return 2
        started.update(descendants(os.getpid()))
        node_ids = [cluster.head_node.node_id, node_a.node_id, node_b.node_id]

        multi_node_tasks(node_ids)
        object_transfer(node_a.node_id, node_b.node_id)
        node_death(cluster, started)
        if failed:
            log("FAILED: " + " ".join(failed))
            status = 1
    finally:
        if cluster is not None:
            started.update(descendants(os.getpid()))
            try:
                ray.shutdown()
                cluster.shutdown()
            except Exception as e:
                log("cluster shutdown: %r" % e)
                status = status or 1
        killed = reap_leftovers(started)
        if killed:
            log("killed %d Ray processes left after shutdown: %s"
                % (len(killed), " ".join(map(str, killed))))
        shutil.rmtree(TMP_ROOT, ignore_errors=True)
        log("took %.1f s" % (time.perf_counter() - t_start))
    return status


if __name__ == "__main__":
    sys.exit(main())
