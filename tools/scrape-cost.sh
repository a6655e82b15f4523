#!/usr/bin/env bash
# What a Prometheus scrape of keg's metrics-port costs (issue 13's figures):
#   - CPU per scrape of /metrics with N keys (default 1,000,000): keg's CPU time over 200 scrapes;
#   - RESP latency (redis-benchmark GET, 50 clients, p50/p99) without scrapes, then with 10
#     scrapes a second, alternated three times on the same server.
#   tools/scrape-cost.sh [keys]
# Needs the Release build (tools/test.sh or cmake --build build/release) and redis-benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
keys=${1:-1000000}
server=build/release/src/server/keg-server
[[ -x "$server" ]] || { echo "build the Release server first: cmake --build build/release" >&2; exit 2; }
command -v redis-benchmark >/dev/null || { echo "redis-benchmark is missing: tools/install-deps.sh --bench" >&2; exit 2; }

work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$server" --port "$port" --metrics-port "$mport" --dir "$work/data" --enable-debug-command yes \
  --logfile "$work/keg.log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
echo "populating $keys keys ..."
redis-cli -p "$port" debug populate "$keys" key 100 >/dev/null
redis-benchmark -p "$port" -n 100000 -q -t get >/dev/null  # warm up; commands show in /metrics

cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
tick=$(getconf CLK_TCK)
before=$(cpu)
t0=$(date +%s.%N)
for _ in $(seq 200); do curl -s -o /dev/null "http://127.0.0.1:$mport/metrics"; done
t1=$(date +%s.%N)
after=$(cpu)
bytes=$(curl -s "http://127.0.0.1:$mport/metrics" | wc -c)
python3 - "$before" "$after" "$tick" "$t0" "$t1" "$bytes" "$keys" <<'EOF'
import sys
b, a, tick, t0, t1, size, keys = map(float, sys.argv[1:])
print(f"scrape: {(a - b) / tick / 200 * 1000:.3f} ms of keg CPU per scrape, "
      f"{(t1 - t0) / 200 * 1000:.2f} ms wall each (curl included), {int(size)} bytes, {int(keys)} keys")
EOF

latency() {  # prints "p50 p99" of GET for 50 clients
  redis-benchmark -p "$port" -c 50 -n 200000 -t get --csv 2>/dev/null |
    python3 -c 'import csv,sys; r=list(csv.reader(sys.stdin)); h=r[0]; v=r[1]; print(v[h.index("p50_latency_ms")], v[h.index("p99_latency_ms")])'
}
for round in 1 2 3; do
  quiet=$(latency)
  # One scraping process (no process started per scrape, which would disturb the measurement).
  python3 -c 'import sys, time, urllib.request
url = sys.argv[1]
while True:
    urllib.request.urlopen(url, timeout=10).read()
    time.sleep(0.1)' "http://127.0.0.1:$mport/metrics" &
  scraper=$!
  busy=$(latency)
  kill $scraper; wait $scraper 2>/dev/null || true
  echo "round $round: GET p50/p99 ms without scrapes $quiet; with 10 scrapes/s $busy"
done
