#!/usr/bin/env bash
# The HTTP doors against their do-nothing floor, builds alternating, as BENCHMARKS.md reports
# them: for each round and each tollgate binary given, start `tollgate serve` on the embedded
# demo, run `tollgate bench --authzen` and `--http --single` with `--baseline` (the floor is
# started by the same command, so each ratio is taken within one minute), stop the server.
#
#   benches/http_doors.sh [ROUNDS] BINARY...     e.g. benches/http_doors.sh 3 old/tollgate target/release/tollgate
#
# Each binary needs `tollgate-floor` next to it (`cargo build --release` puts both there).
set -euo pipefail
rounds=3
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then rounds=$1; shift; fi
if [[ $# -eq 0 ]]; then set -- target/release/tollgate; fi
for bin in "$@"; do
  [[ -x "$bin" && -x "$(dirname "$bin")/tollgate-floor" ]] || {
    echo "$bin: not an executable with tollgate-floor next to it (run cargo build --release)" >&2
    exit 2
  }
done
ready() {
  for _ in $(seq 100); do
    if curl -fs -o /dev/null http://127.0.0.1:9192/readyz; then return 0; fi
    sleep 0.1
  done
  echo "tollgate serve did not become ready on 127.0.0.1:9192 (is another one running?)" >&2
  return 1
}
for round in $(seq "$rounds"); do
  for bin in "$@"; do
    "$bin" serve >/dev/null 2>&1 &
    pid=$!
    trap 'kill $pid 2>/dev/null' EXIT
    ready
    for mode in "--authzen" "--http --single"; do
      # shellcheck disable=SC2086
      out=$("$bin" bench $mode --baseline --concurrency 16 --duration 8 --warmup 2 --server-pid "$pid" 2>&1)
      ratio=$(grep 'tollgate / baseline' <<<"$out" | sed 's/tollgate \/ baseline: //')
      echo "round $round  $bin  $mode  $ratio"
    done
    kill "$pid" || { echo "the server exited early" >&2; exit 1; }
    wait "$pid" 2>/dev/null || true
  done
done
