#!/usr/bin/env python3
"""A flood of distinct forged tokens, against what a signature check costs on this machine.

Issue 11's target: a distinct forgery may cost at most 1.1x (signature verification + the
allowed path) in server CPU. Over the network a request that holds its core for a signature
check also pays the machine for being busy (interrupts, wakeups, caches refilled after it), and
a larger process pays more for that than a small one. So this script alternates six runs at one
fixed rate, ROUNDS times (in this order, and in reverse every other round, so that a drift in
the machine's speed weighs on all alike):

  floor          `tollgate-floor`: Tollgate's transport answering OK without looking
  floor+ES256    `tollgate-floor --verify-es256`: the floor, verifying one ES256 signature
                 (aws-lc-rs, as Tollgate's token check) on every request
  allowed        `tollgate serve` (embedded demo), `tollgate bench --single`
  allowed+ES256  the same with a `signature-probe` build (`tollgate-probe`, built here):
                 every Check first verifies the floor's ES256 signature, then is decided as
                 usual: the allowed path plus a signature check, in Tollgate's own process
  forgeries      `tollgate serve`, `tollgate bench --distinct forgeries`
  new tokens     `tollgate serve`, `tollgate bench --distinct tokens`: the allowed request with a
                 new, validly signed token every time (minted ahead by the generator)

each driven open-loop by `tollgate bench --rate R --connections 16`, with the server's CPU per
request read from /proc. Then, medians over the rounds of:
  forgeries / allowed+ES256                   the target's measure, in one process
  forgeries / (floor+ES256 - floor + allowed) the same with the signature measured in the floor
  forgeries / new tokens                      against a legitimate caller's new token

An even ROUNDS gives each order as many rounds. The ratios are medians of the per-round ratios.

Usage: python3 benches/forgeries.py [--rounds 4] [--seconds 10] [--rate 6000]
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(REPO, "target", "release")
FLOOR_PORT = 9291
CPU = re.compile(r"server CPU ([0-9.]+)µs/request")
ANSWERED = re.compile(r"(\d+) answered \((\d+) allowed, (\d+) denied\), (\d+) errors")


def bench(server, pid, args, rate, seconds):
    out = subprocess.run(
        [os.path.join(RELEASE, "tollgate"), "bench", "--server", server, "--connections", "16",
         "--rate", str(rate), "--duration", str(seconds), "--server-pid", str(pid), *args],
        capture_output=True, text=True, check=True).stdout
    cpu, answered = CPU.search(out), ANSWERED.search(out)
    if not cpu or not answered:
        sys.exit(f"unexpected bench output:\n{out}")
    return float(cpu.group(1)), tuple(int(x) for x in answered.groups())


def floor(extra, rate, seconds):
    proc = subprocess.Popen([os.path.join(RELEASE, "tollgate-floor"), *extra,
                             f"127.0.0.1:{FLOOR_PORT}"], stdout=subprocess.PIPE, text=True)
    try:
        if "listening" not in proc.stdout.readline():
            sys.exit("tollgate-floor did not start")
        cpu, (_, _, denied, errors) = bench(f"http://127.0.0.1:{FLOOR_PORT}", proc.pid, ["--single"],
                                            rate, seconds)
        if denied or errors:
            sys.exit(f"the floor answered {denied} denies and {errors} errors")
        return cpu
    finally:
        proc.terminate()
        proc.wait()


def tollgate(args, rate, seconds, want_denied, binary="tollgate"):
    proc = subprocess.Popen([os.path.join(RELEASE, binary), "serve"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen("http://127.0.0.1:9192/readyz", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    sys.exit("tollgate serve did not become ready on 127.0.0.1:9192")
                time.sleep(0.1)
        cpu, (answered, allowed, denied, errors) = bench("http://127.0.0.1:9191", proc.pid, args,
                                                         rate, seconds)
        wrong = allowed if want_denied else denied
        if wrong or errors:
            sys.exit(f"tollgate answered {allowed} allows, {denied} denies, {errors} errors "
                     f"of {answered}: not the scenario")
        return cpu
    finally:
        proc.terminate()
        proc.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rate", type=int, default=6000)
    opts = parser.parse_args()
    # The probe build first, copied aside; building without the feature afterwards puts the
    # ordinary `tollgate` back at once (cargo keeps both builds of the crate), even when the
    # probe's build or copy failed. Run nothing else from target/release meanwhile.
    try:
        subprocess.run(["cargo", "build", "--release", "--bin", "tollgate", "--features",
                        "signature-probe"], cwd=REPO, check=True)
        aside = os.path.join(RELEASE, "tollgate-probe.new")
        shutil.copy2(os.path.join(RELEASE, "tollgate"), aside)
        os.replace(aside, os.path.join(RELEASE, "tollgate-probe"))
    finally:
        subprocess.run(["cargo", "build", "--release", "--bins"], cwd=REPO, check=True)
    names = ("floor", "floor+ES256", "allowed", "allowed+ES256", "forgeries", "new tokens")
    runs = {name: [] for name in names}
    measure = {
        "floor": lambda: floor([], opts.rate, opts.seconds),
        "floor+ES256": lambda: floor(["--verify-es256"], opts.rate, opts.seconds),
        "allowed": lambda: tollgate(["--single"], opts.rate, opts.seconds, False),
        "allowed+ES256": lambda: tollgate(["--single"], opts.rate, opts.seconds, False,
                                          "tollgate-probe"),
        "forgeries": lambda: tollgate(["--distinct", "forgeries"], opts.rate, opts.seconds, True),
        "new tokens": lambda: tollgate(["--distinct", "tokens"], opts.rate, opts.seconds, False),
    }
    order = list(measure)
    for n in range(1, opts.rounds + 1):
        # Every other round in reverse: a machine that slows (or speeds up) over a run then
        # weighs on each server alike, and what is compared (allowed+ES256 with forgeries,
        # forgeries with new tokens) always runs side by side.
        for name in order if n % 2 else reversed(order):
            runs[name].append(measure[name]())
        print(f"round {n}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in runs.items())
              + " (server CPU µs/request)", flush=True)
    in_process = [g / p for g, p in zip(runs["forgeries"], runs["allowed+ES256"])]
    ratios = [g / ((fs - f) + a) for f, fs, a, _, g, _ in zip(*runs.values())]
    against_tokens = [g / t for g, t in zip(runs["forgeries"], runs["new tokens"])]
    med = {k: statistics.median(v) for k, v in runs.items()}
    print(f"\nat {opts.rate} req/s, 16 connections, medians of {opts.rounds}:")
    for k, v in med.items():
        print(f"  {k:<14} {v:7.1f} µs/request")
    print(f"  signature      {med['floor+ES256'] - med['floor']:7.1f} µs/request (floor+ES256 - floor)")
    print("  ratio forgeries / (allowed+ES256), the signature in Tollgate's process: per round "
          + ", ".join(f"{r:.2f}" for r in in_process)
          + f"; median {statistics.median(in_process):.2f}")
    print(f"  ratio forgeries / (signature + allowed), the signature in the floor's: per round "
          + ", ".join(f"{r:.2f}" for r in ratios) + f"; median {statistics.median(ratios):.2f}")
    print("  ratio forgeries / new tokens: per round "
          + ", ".join(f"{r:.2f}" for r in against_tokens)
          + f"; median {statistics.median(against_tokens):.2f}")


if __name__ == "__main__":
    main()
