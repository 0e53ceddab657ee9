"""The serve no-op figures on Ray Serve: one replica of a deployment answering {"ok": true} on
127.0.0.1, measured with the luray serve group's command (`wrk -t2 -c64 -d10s --latency
--timeout 30s`). Prints serve_noop_requests_per_s and serve_noop_p99_ms with system "ray",
medians of LURAY_BENCH_RUNS runs after a warm-up. Ray Serve keeps its defaults (its HTTP proxy,
request logs to files) but one: max_ongoing_requests is raised from 5 to 100, since with 5 the
replica's queue at 64 connections makes Ray's proxy stall (about 10x fewer requests per second
here, with many over 2 s).
Env: LURAY_BENCH_RUNS (default 3), LURAY_BENCH_SCALE (scales the 10 s per run),
LURAY_BENCH_NUM_CPUS (Ray's num_cpus, default 2), RAY_BENCH_MAX_ONGOING (default 100).
"""
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

from benchlib import RUNS, Bench

MAX_ONGOING = int(os.environ.get("RAY_BENCH_MAX_ONGOING", "100") or 100)
SECONDS = max(1, int(10 * float(os.environ.get("LURAY_BENCH_SCALE", "1") or 1) + 0.5))
UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def to_ms(text):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError("wrk latency %r has no known unit" % text)
    return float(m.group(1)) * UNITS_MS[m.group(2)]


def wrk(url, seconds):
    """One wrk run: (requests per second, p99 in ms); raises when a request failed."""
    out = subprocess.run(["wrk", "-t2", "-c64", "-d%ds" % seconds, "--latency", "--timeout", "30s",
                          url],
                         capture_output=True, text=True, timeout=seconds + 60)
    text = out.stdout + out.stderr
    if out.returncode != 0:
        raise RuntimeError("wrk failed: " + text)
    rps = re.search(r"^Requests/sec:\s+([0-9.]+)", text, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", text, re.M)
    if not rps or not p99:
        raise RuntimeError("cannot read wrk's output: " + text)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    errors = (int(bad.group(1)) if bad else 0) + (sum(map(int, sock.groups())) if sock else 0)
    if errors:
        raise RuntimeError("%d requests failed: %s" % (errors, text))
    return float(rps.group(1)), to_ms(p99.group(1))


def main():
    bench = Bench("ray")
    if shutil.which("wrk") is None:
        bench.log("wrk is not installed (scripts/install-deps.sh bench installs it); skipped")
        return 0
    import ray
    from ray import serve

    port = free_port()
    ray.init(num_cpus=int(os.environ.get("LURAY_BENCH_NUM_CPUS", "2") or 2),
             include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})

        @serve.deployment(num_replicas=1, max_ongoing_requests=MAX_ONGOING)
        class Noop:
            async def __call__(self, request):
                return {"ok": True}

        serve.run(Noop.bind(), name="noop", route_prefix="/")
        url = "http://127.0.0.1:%d/" % port
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    body = r.read()
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.5)
        if b'"ok"' not in body:
            raise RuntimeError("unexpected answer from %s: %r" % (url, body[:200]))

        def figures():
            bench.log("serve_noop: warm-up")
            wrk(url, 2)
            rates, p99s = [], []
            for i in range(RUNS):
                rate, p99 = wrk(url, SECONDS)
                bench.log("serve_noop run %d: %.1f req/s, p99 %.2f ms" % (i + 1, rate, p99))
                rates.append(rate)
                p99s.append(p99)
            extra = {"wrk": "-t2 -c64 -d%ds" % SECONDS, "replicas": 1,
                     "max_ongoing_requests": MAX_ONGOING}
            bench.emit("serve_noop_requests_per_s", statistics.median(rates), "req/s", rates,
                       **extra)
            bench.emit("serve_noop_p99_ms", statistics.median(p99s), "ms", p99s, **extra)

        bench.figure("serve_noop", figures)
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
    return bench.exit_code()


if __name__ == "__main__":
    sys.exit(main())
