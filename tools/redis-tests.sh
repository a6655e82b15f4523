#!/usr/bin/env bash
# Redis 7.0.15's own test suite against keg-server, unit by unit, in external mode.
#
#   tools/redis-tests.sh [--server BIN] [--units "unit/type/string keyspace ..."] [--against-redis]
#                        [--update] [--jobs N]
#
# 1. Gets the suite from Debian's `redis` source package, the version of the installed
#    redis-server (apt-get source through a private deb-src list: the system's apt configuration is
#    not touched), cached under build/redis-tests/.
# 2. For each unit: starts a fresh keg-server (or, with --against-redis, redis-server) on a free
#    port with an empty directory and `enable-debug-command yes`, runs
#    `./runtest --host 127.0.0.1 --port P --single UNIT --singledb --durable`, stops the server.
# 3. Compares with tests/redis/: redis-passes.txt (what redis-server 7.0.15 passes in this very
#    mode; --against-redis --update rewrites it) and expected-failures.txt (every test Redis passes
#    that keg does not, with its reason). Fails on an unexpected failure and on an unexpected pass,
#    so the list only shrinks; prints "keg N of Redis M" per unit.
#
# Needs tcl and dpkg-dev (tools/install-deps.sh --test installs them) and redis-server.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
cache="$root/build/redis-tests"
mkdir -p "$cache"

version=$(dpkg-query -W -f='${Version}' redis-server 2>/dev/null || true)
if [[ -z "$version" ]]; then
  echo "redis-tests: redis-server is not installed (tools/install-deps.sh --test)" >&2
  exit 1
fi
src="$cache/src-$version"
if [[ ! -x "$src/runtest" ]]; then
  echo "redis-tests: fetching Debian's redis $version source package"
  work="$cache/apt"
  rm -rf "$work" "$src.tmp"
  mkdir -p "$work/lists/partial" "$work/archives/partial" "$src.tmp"
  # deb-src entries for the same archives the system's deb entries use, in a private list.
  {
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      [[ -f "$f" ]] && sed -n 's/^deb \(.*\)$/deb-src \1/p' "$f"
    done
  } > "$work/sources.list"
  parts="$work/parts"
  mkdir -p "$parts"
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f "$f" ]] && sed 's/^Types: deb$/Types: deb-src/' "$f" > "$parts/$(basename "$f")"
  done
  apt_opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=$parts"
            -o "Dir::State::Lists=$work/lists" -o "Dir::Cache::Archives=$work/archives"
            -o "APT::Sandbox::User=root" -q)
  apt-get "${apt_opts[@]}" update >/dev/null
  (cd "$src.tmp" && apt-get "${apt_opts[@]}" source "redis=$version" >/dev/null)
  dir=$(find "$src.tmp" -maxdepth 1 -mindepth 1 -type d -name 'redis-*' | head -1)
  if [[ -z "$dir" || ! -x "$dir/runtest" ]]; then
    echo "redis-tests: could not unpack the redis source package" >&2
    exit 1
  fi
  mv "$dir" "$src"
  rm -rf "$src.tmp" "$work"
fi

exec /usr/bin/python3 "$root/tests/redis/run_units.py" --source "$src" "$@"
