#!/usr/bin/env bash
# The reliability suite's long mode: many more SIGKILL and power-loss cycles than CI runs, and
# many Sentinel failovers in a row.
#   tools/soak.sh [--cycles N] [--policies "always everysec no"] [--seed S] [--failovers N]
#                 [--linearizable N]
# Builds Release, then runs tests/reliability/crash.py for every policy, first with kill -9, then
# with simulated power loss (the fault shim); writes one JSON report per run to build/soak/ and a
# Markdown table of the figures to build/soak/summary.md (what docs/reliability.md quotes).
# Default: 1,000 cycles per policy and mode, each killing keg within 0.05-0.6 s of load (about
# 50 minutes on 2 cores). Then --failovers (default 100; 0: none) failovers of a keg primary by three
# redis-sentinels, SIGKILL, SIGSTOP and a partition in turn, with redis-py and ioredis writing through them
# (tests/compat/test_sentinel.py test_keg_failover_soak; about 20 s a failover): no write both
# replicas acknowledged may be lost. Its log: build/soak/failover.log. Then --linearizable (default
# 20; 0: none) runs of tests/reliability/linearizable.py, 60 s each, alternately under everysec and
# under always with 5 SIGKILLs, each on a new seed: every history must be linearizable. Their log:
# build/soak/linearizable.log.
set -euo pipefail
cd "$(dirname "$0")/.."
cycles=1000
policies="always everysec no"
seed=$(date +%s)
failovers=100
linearizable=20
while [[ $# -gt 0 ]]; do
  case "$1" in
    --cycles) cycles=$2; shift 2 ;;
    --policies) policies=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --failovers) failovers=$2; shift 2 ;;
    --linearizable) linearizable=$2; shift 2 ;;
    *) echo "usage: $0 [--cycles N] [--policies \"always everysec no\"] [--seed S] [--failovers N] [--linearizable N]" >&2; exit 2 ;;
  esac
done
tools/install-deps.sh --test
# A build of its own: a soak runs for an hour, and the binaries must not change under it.
cmake -S . -B build/soak-bin -G Ninja -DCMAKE_BUILD_TYPE=Release -DKEG_BENCH=OFF >/dev/null
cmake --build build/soak-bin --target keg-server keg-check keg_fault_shim
out=build/soak
rm -rf "$out"
mkdir -p "$out"
export KEG_SERVER=$PWD/build/soak-bin/src/server/keg-server
export KEG_CHECK=$PWD/build/soak-bin/tools/keg-check
shim=$PWD/build/soak-bin/tests/libkeg_fault_shim.so
status=0
for mode in kill powerloss; do
  for policy in $policies; do
    extra=()
    [[ $mode == powerloss ]] && extra=(--powerloss "$shim")
    echo "== $mode, $policy: $cycles cycles (seed $seed)"
    if ! /usr/bin/python3 tests/reliability/crash.py --policy "$policy" --cycles "$cycles" \
        --seed "$seed" --big-values --max-run 0.6 --report "$out/$mode-$policy.json" "${extra[@]}" \
        > "$out/$mode-$policy.log" 2>&1; then
      status=1
      echo "FAILED: see $out/$mode-$policy.log"
    fi
    tail -1 "$out/$mode-$policy.log"
  done
done
/usr/bin/python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
rows = ["| mode | policy | cycles | acknowledged writes | keys checked | acknowledged writes lost | largest loss window | kills during compaction | kills during recovery | compactions completed | torn tails cut | restart p50 / p99 | failures |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
for mode in ("kill", "powerloss"):
    for policy in ("always", "everysec", "no"):
        path = os.path.join(out, f"{mode}-{policy}.json")
        if not os.path.exists(path):
            continue
        r = json.load(open(path))
        rows.append(f"| {r['mode']} | {policy} | {r['cycles']:,} | {r['acked_writes']:,} | {r['keys_verified']:,} | "
                    f"{r['lost_acked']:,} | {r['max_loss_window_s']:.3f} s | {r['kills_during_compaction']} | "
                    f"{r['kills_during_recovery']} | {r['compactions_completed']} | {r['torn_tails_cut']} | {r.get('recovery_p50_ms', 0)} / "
                    f"{r.get('recovery_p99_ms', 0)} ms | {r['failures']} |")
open(os.path.join(out, "summary.md"), "w").write("\n".join(rows) + "\n")
print("\n".join(rows))
PY
if [[ $failovers -gt 0 ]]; then
  echo "== Sentinel failovers: $failovers"
  if ! (cd tests/compat && KEG_FAILOVER_SOAK=$failovers KEG_TEST_WATCHDOG=0 /usr/bin/python3 -m unittest -v \
      test_sentinel.SentinelFailoverTest.test_keg_failover_soak) > "$out/failover.log" 2>&1; then
    status=1
    echo "FAILED: see $out/failover.log"
  fi
  grep -E "^(SIGKILL|SIGSTOP|w:|io:)" "$out/failover.log" || true
fi
for ((i = 0; i < linearizable; i++)); do
  args=(--seconds 60 --seed $((seed + i)))
  ((i % 2)) && args+=(--policy always --kills 5)
  echo "== linearizability $((i + 1))/$linearizable: ${args[*]}" | tee -a "$out/linearizable.log"
  if ! /usr/bin/python3 tests/reliability/linearizable.py "${args[@]}" >> "$out/linearizable.log" 2>&1; then
    status=1
    echo "FAILED: see $out/linearizable.log"
  fi
  tail -1 "$out/linearizable.log"
done
exit $status
