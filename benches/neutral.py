#!/usr/bin/env python3
"""Tollgate against a neutral floor, measured with h2load as an outsider would.

Builds the release binaries, writes one pre-serialised CheckRequest (the demo's allowed order
read, real certificate and token) with `tollgate bench --write-frame`, then alternates, ROUNDS
times: the plain tonic floor (`tollgate-floor --bare`) and `tollgate serve` on the embedded
demo estate, each driven by `h2load -t1 -cN -m1 -D SECONDS --warm-up-time=2` at every
connection count. For each run it reports throughput, latency percentiles (from h2load's
per-request log) and the server's CPU per request (from /proc/PID/stat over the measured
seconds), then the medians and the ratios. For Tollgate it also checks on /metrics that the
requests were allowed decisions, not errors.

Needs h2load (Debian: apt-get install nghttp2-client). Usage:
    python3 benches/neutral.py [--rounds 3] [--seconds 10] [--connections 16,64]
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(REPO, "target", "release")
PATH = "/envoy.service.auth.v3.Authorization/Check"
WARMUP = 2
USER_HZ = 100  # Linux fixes clock ticks at 100 a second for user space.


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / USER_HZ


def wait_for_port(port, what):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            import socket

            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} did not listen on {port} within 30 s")


def allowed_total(admin_port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5).read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("tollgate_decisions_total{") and 'decision="allow"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def h2load(port, connections, seconds, frame, pid, log):
    """One h2load run; returns (req/s, p50 us, p99 us, server CPU us/request, requests)."""
    cmd = [
        "h2load", "-t1", f"-c{connections}", "-m1", f"-D{seconds}", f"--warm-up-time={WARMUP}",
        "-d", frame, "-H", "content-type: application/grpc", "-H", "te: trailers",
        f"--log-file={log}", f"http://127.0.0.1:{port}{PATH}",
    ]
    cpu = {}

    def sample():
        time.sleep(WARMUP)
        cpu["from"] = cpu_seconds(pid)

    sampler = threading.Thread(target=sample)
    sampler.start()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    cpu["to"] = cpu_seconds(pid)
    sampler.join()
    rate = float(re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out).group(1))
    succeeded = int(re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", out).group(1))
    errored = re.search(r"(\d+) failed, (\d+) errored", out)
    if errored and (int(errored.group(1)) or int(errored.group(2))):
        sys.exit(f"h2load saw failures:\n{out}")
    durations = sorted(int(line.split()[2]) for line in open(log) if line.strip())
    pct = lambda q: durations[min(len(durations) - 1, int(q * len(durations)))]
    cpu_us = (cpu["to"] - cpu["from"]) * 1e6 / max(succeeded, 1)
    return rate, pct(0.5), pct(0.99), cpu_us, succeeded


class Server:
    def __init__(self, cmd, port, env=None):
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        wait_for_port(port, cmd[0])

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", default="16,64")
    args = parser.parse_args()
    if not shutil.which("h2load"):
        sys.exit("h2load is needed: apt-get install nghttp2-client")
    counts = [int(c) for c in args.connections.split(",")]
    print("building release binaries ...", flush=True)
    subprocess.run(["cargo", "build", "--release", "--locked", "--bins"], cwd=REPO, check=True)
    tmp = tempfile.mkdtemp(prefix="tollgate-neutral-")
    frame = os.path.join(tmp, "check.grpc")
    subprocess.run([os.path.join(RELEASE, "tollgate"), "bench", "--write-frame", frame], check=True,
                   stdout=subprocess.DEVNULL)
    results = {}  # (server, connections) -> list of runs
    env = dict(os.environ, RUST_LOG="warn")
    for r in range(1, args.rounds + 1):
        for name in ["floor", "tollgate"]:
            if name == "floor":
                server = Server([os.path.join(RELEASE, "tollgate-floor"), "--bare", "127.0.0.1:9391"], 9391)
                port = 9391
            else:
                server = Server([os.path.join(RELEASE, "tollgate"), "serve"], 9191, env=env)
                port = 9191
                wait_for_port(9192, "admin listener")
            try:
                for c in counts:
                    before = allowed_total(9192) if name == "tollgate" else None
                    run = h2load(port, c, args.seconds, frame, server.proc.pid, os.path.join(tmp, "log"))
                    if before is not None:
                        allowed = allowed_total(9192) - before
                        if allowed < run[4]:
                            sys.exit(f"only {allowed:.0f} of {run[4]} requests were allowed decisions")
                    results.setdefault((name, c), []).append(run)
                    print(f"round {r} {name:8} c={c:<3} {run[0]:8.0f} req/s  p50 {run[1]:5d}us  "
                          f"p99 {run[2]:5d}us  server CPU {run[3]:5.1f}us/req", flush=True)
            finally:
                server.stop()
    print()
    print("| connections | floor req/s | tollgate req/s | ratio | floor CPU µs/req | tollgate CPU µs/req | ratio | tollgate p99 |")
    print("|---|---|---|---|---|---|---|---|")
    for c in counts:
        med = lambda name, i: statistics.median(run[i] for run in results[(name, c)])
        f_rate, t_rate = med("floor", 0), med("tollgate", 0)
        f_cpu, t_cpu = med("floor", 3), med("tollgate", 3)
        print(f"| {c} | {f_rate:.0f} | {t_rate:.0f} | {100 * t_rate / f_rate:.0f}% | {f_cpu:.1f} | "
              f"{t_cpu:.1f} | {t_cpu / f_cpu:.2f}× | {med('tollgate', 2) / 1000:.2f} ms |")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
