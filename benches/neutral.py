#!/usr/bin/env python3
"""Tollgate against a neutral floor, measured with h2load as an outsider would.

Builds the release binaries, writes one pre-serialised CheckRequest (the demo's allowed order
read, real certificate and token) with `tollgate bench --write-frame`, then alternates, ROUNDS
times: the plain tonic floor (`tollgate-floor --bare`) and `tollgate serve` on the embedded
demo estate, each driven by `h2load -t1 -cN -m1 -D SECONDS --warm-up-time=2` at every
connection count. For each run it reports throughput, latency percentiles (from h2load's
per-request log) and the server's CPU per request (from /proc/PID/stat over the measured
seconds), then the medians and the ratios. For Tollgate it also checks on /metrics that the
requests were the decisions expected (allowed; or denied `token_signature`), not errors.

Tollgate is also driven with the same request carrying a forged token (one signature character
changed): a replayed forgery, which must not be a cheap way to load it. `--compare BIN` adds
another `tollgate` binary (an earlier build) to every round, for before/after figures.

Needs h2load (Debian: apt-get install nghttp2-client). Usage:
    python3 benches/neutral.py [--rounds 3] [--seconds 10] [--connections 16,64] [--compare BIN]
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


def decisions(admin_port, label):
    """The count of `tollgate_decisions_total` series whose labels contain `label`."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5).read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("tollgate_decisions_total{") and label in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def forge(frame):
    """The same gRPC message with one character of the token's signature changed."""
    start = frame.index(b"Bearer ") + len(b"Bearer ")
    end = start
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
    while end < len(frame) and frame[end] in alphabet:
        end += 1
    at = end - 5  # inside the signature, clear of the last character's padding bits
    forged = bytearray(frame)
    forged[at] = ord("A") if forged[at] != ord("A") else ord("B")
    return bytes(forged)


def h2load(port, connections, seconds, frame, pid, log):
    """One h2load run; returns (req/s, p50 us, p99 us, server CPU us/request, requests)."""
    cmd = [
        "h2load", "-t1", f"-c{connections}", "-m1", f"-D{seconds}", f"--warm-up-time={WARMUP}",
        "-d", frame, "-H", "content-type: application/grpc", "-H", "te: trailers",
        f"--log-file={log}", f"http://127.0.0.1:{port}{PATH}",
    ]
    if os.path.exists(log):
        os.remove(log)  # h2load appends to its log file
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
    parser.add_argument("--compare", metavar="BIN", help="another tollgate binary to measure too")
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
    forged = os.path.join(tmp, "forged.grpc")
    with open(frame, "rb") as f, open(forged, "wb") as out:
        out.write(forge(f.read()))
    # (name, command, port, [(scenario, frame, expected decisions label)])
    servers = [("floor", [os.path.join(RELEASE, "tollgate-floor"), "--bare", "127.0.0.1:9391"], 9391,
                [("allowed", frame, None)])]
    tollgates = [("tollgate", os.path.join(RELEASE, "tollgate"))]
    if args.compare:
        tollgates.insert(0, ("before", args.compare))
    for name, binary in tollgates:
        servers.append((name, [binary, "serve"], 9191,
                        [("allowed", frame, 'decision="allow"'),
                         ("forged", forged, 'reason="token_signature"')]))
    results = {}  # (server, scenario, connections) -> list of runs
    # Tollgate's default log level (info), as a user runs it; logs go to /dev/null.
    env = {k: v for k, v in os.environ.items() if k != "RUST_LOG"}
    for r in range(1, args.rounds + 1):
        for name, cmd, port, scenarios in servers:
            server = Server(cmd, port, env=env)
            if port == 9191:
                wait_for_port(9192, "admin listener")
            try:
                for scenario, body, label in scenarios:
                    for c in counts:
                        before = decisions(9192, label) if label else None
                        run = h2load(port, c, args.seconds, body, server.proc.pid, os.path.join(tmp, "log"))
                        if before is not None:
                            seen = decisions(9192, label) - before
                            if seen < run[4]:
                                sys.exit(f"{name} {scenario}: only {seen:.0f} of {run[4]} requests were "
                                         f"decisions with {label}")
                        results.setdefault((name, scenario, c), []).append(run)
                        print(f"round {r} {name:8} {scenario:7} c={c:<3} {run[0]:8.0f} req/s  "
                              f"p50 {run[1]:5d}us  p99 {run[2]:5d}us  server CPU {run[3]:5.1f}us/req",
                              flush=True)
            finally:
                server.stop()
    med = lambda key, i: statistics.median(run[i] for run in results[key])
    print()
    print(f"Medians of {args.rounds} alternating rounds, h2load -t1 -cN -m1 -D{args.seconds} "
          f"--warm-up-time={WARMUP}; floor = plain tonic (tollgate-floor --bare).")
    print()
    print("| server | request | connections | req/s | vs floor | p50 | p99 | server CPU µs/req | vs floor |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, _, _, scenarios in servers:
        for scenario, _, _ in scenarios:
            for c in counts:
                key, floor = (name, scenario, c), ("floor", "allowed", c)
                print(f"| {name} | {scenario} | {c} | {med(key, 0):.0f} | "
                      f"{100 * med(key, 0) / med(floor, 0):.0f}% | {med(key, 1) / 1000:.2f} ms | "
                      f"{med(key, 2) / 1000:.2f} ms | {med(key, 3):.1f} | "
                      f"{med(key, 3) / med(floor, 3):.2f}× |")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
