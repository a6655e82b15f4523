#!/usr/bin/env bash
# Installs what keg needs from Debian 12's packages, skipping what is already there.
#
#   tools/install-deps.sh          build and run dependencies (what tools/run.sh needs)
#   tools/install-deps.sh --test   also everything the test suite needs (tools/test.sh)
#   tools/install-deps.sh --bench  also what tools/bench.sh needs (redis-server, gnuplot)
#
# Uses apt-get directly when run as root, sudo otherwise. Idempotent: a second run installs nothing.
set -euo pipefail

run_packages=(
  build-essential cmake ninja-build pkg-config
  libasio-dev libspdlog-dev libxxhash-dev liblzf-dev libssl-dev liburing-dev
  libjemalloc-dev  # keg-server's allocator, as Redis's
  liblua5.1-0-dev lua-cjson-dev lua-bitop-dev  # scripts: Lua 5.1 with cjson and bit, as Redis
  redis-tools  # redis-cli, which README.md's next line tells a new user to run
)
test_packages=(
  libhiredis-dev googletest libgtest-dev libgmock-dev libbenchmark-dev
  clang-14 libfuzzer-14-dev libclang-rt-14-dev
  redis-server redis-tools python3-redis nutcracker nodejs
  python3-limits  # tests/compat/test_scripting.py: rate limiting through its Lua scripts
  tcl dpkg-dev  # Redis's own test suite (tools/redis-tests.sh): its runner, apt-get source
  prometheus-redis-exporter  # tests/compat/test_observability.py: what operators scrape
  prometheus  # promtool checks keg's /metrics exposition (command_test)
  gdb  # a hung compat test prints its servers' threads (tests/compat/kegtest.py's watchdog)
)

bench_packages=(redis-server redis-tools gnuplot-nox fio)  # fio: tools/bench-disk.sh's reference

want=("${run_packages[@]}")
if [[ "${1:-}" == "--test" ]]; then
  want+=("${test_packages[@]}")
elif [[ "${1:-}" == "--bench" ]]; then
  want+=("${bench_packages[@]}")
elif [[ $# -gt 0 ]]; then
  echo "usage: $0 [--test|--bench]" >&2
  exit 2
fi

missing=()
for pkg in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

# Debian's nodejs ships without npm; some nodejs builds include it.
if [[ "${1:-}" == "--test" ]] && ! command -v npm >/dev/null; then
  missing+=(npm)
fi

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#want[@]} packages already installed"
fi

sudo=()
if [[ ${#missing[@]} -gt 0 && $(id -u) -ne 0 ]]; then
  if ! command -v sudo >/dev/null; then
    echo "install-deps: need root or sudo to install: ${missing[*]}" >&2
    exit 1
  fi
  sudo=(sudo)
fi

if [[ ${#missing[@]} -gt 0 ]]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -q
  "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The Node.js clients of the compatibility suite, exactly as locked in package-lock.json.
if [[ "${1:-}" == "--test" ]]; then
  node_dir="$(cd "$(dirname "$0")/.." && pwd)/tests/compat/node"
  stamp="$node_dir/node_modules/.keg-installed-lock"
  if ! cmp -s "$node_dir/package-lock.json" "$stamp" 2>/dev/null; then
    echo "install-deps: npm ci in tests/compat/node"
    (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$node_dir/package-lock.json" "$stamp"
  fi
fi
