#!/usr/bin/env bash
# What a Prometheus scrape of keg's metrics-port costs (issue 13's figures):
#   - CPU per scrape of /metrics with N keys (default 1,000,000): keg's CPU time over 200 scrapes;
#   - RESP latency (redis-benchmark GET, 50 clients, p50/p99) without scrapes, with a poller of
#     /health/live (the control: the poller's own cost) and with 10 scrapes of /metrics a second,
#     alternated three times on the same server.
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
poll() {  # one polling process at 10 requests/s on the given path (no process started per request)
  python3 -c 'import sys, time, urllib.request
url = sys.argv[1]
while True:
    urllib.request.urlopen(url, timeout=10).read()
    time.sleep(0.1)' "http://127.0.0.1:$mport$1" &
  poller=$!
}
abuse() {  # a process that keeps the metrics port under attack until killed
  nice -n 19 python3 - "$mport" <<'PY' &
import socket, sys, threading, urllib.request
port = int(sys.argv[1])
def slowloris():  # heads that never end, reopened when keg cuts them off
    while True:
        try:
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
            s.recv(1)
            s.close()
        except OSError:
            pass
def junk():  # malformed requests and oversized heads, back to back
    bad = [b"GARBAGE\r\n\r\n", b"POST /metrics HTTP/1.1\r\n\r\n",
           b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 100000 + b"\r\n\r\n"]
    i = 0
    while True:
        try:
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(bad[i % 3]); s.recv(100); s.close()
        except OSError:
            pass
        i += 1
def scrape():  # concurrent scrapes
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read()
        except OSError:
            pass
for target, n in ((slowloris, 100), (junk, 4), (scrape, 50)):
    for _ in range(n):
        threading.Thread(target=target, daemon=True).start()
threading.Event().wait()
PY
  abuser=$!
}
# The /health/live column is the control: the poller's own CPU on this machine, with almost nothing
# for keg to do; the difference between it and /metrics is what building the metrics costs. The
# last column runs while 100 slowloris connections, malformed and 100 KB heads and 50 concurrent
# scrapers hit the metrics port (their Python threads share this machine's cores with keg).
for round in 1 2 3; do
  quiet=$(latency)
  poll /health/live; control=$(latency); kill $poller; wait $poller 2>/dev/null || true
  poll /metrics; busy=$(latency); kill $poller; wait $poller 2>/dev/null || true
  abuse; attacked=$(latency); kill $abuser; wait $abuser 2>/dev/null || true
  echo "round $round: GET p50/p99 ms without polling $quiet; polling /health/live $control; scraping /metrics $busy (10/s); under attack $attacked"
done
echo "keg RSS after the attacks: $(awk '/VmRSS/ {print $2, $3}' /proc/$pid/status)"
