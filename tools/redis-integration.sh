#!/usr/bin/env bash
# Redis 7.0.15's own integration units (replication, psync2, failover, ...), and the units the
# external mode skips (unit/wait, unit/obuf-limits, ...), with keg-server in place of
# redis-server: the harness starts every server itself (not external mode), from its
# tests/assets/default.conf plus each test's overrides. tools/test.sh runs the --suite units.
#
#   tools/redis-integration.sh [--server BIN] UNIT...      e.g. integration/replication-2
#   tools/redis-integration.sh [--server BIN] --suite      the units tools/test.sh runs
#
# --suite runs the units tests/redis/integration-units.txt lists, skipping the tests it lists with
# their reasons.
#
# Uses the suite tools/redis-tests.sh fetched (run that once first). In a scratch copy of it,
# src/redis-server is a wrapper that execs keg-server (same pid, as the harness needs) on the
# harness's config file, first removing from it (in place) the line keg refuses on purpose:
# `appendonly no` (keg always logs);
# src/redis-cli and src/redis-benchmark are the installed ones. Prints the harness's [ok] / [err]
# lines; exits with the harness's status.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
server="$root/build/release/src/server/keg-server"
if [[ "${1:-}" == "--server" ]]; then
  server=$(realpath "$2")
  shift 2
fi
skips=()
if [[ "${1:-}" == "--suite" ]]; then
  shift
  list="$root/tests/redis/integration-units.txt"
  mapfile -t units < <(grep -E '^(integration|unit)/' "$list")
  while IFS=$'\t' read -r _ name _; do skips+=(--skiptest "$name"); done < <(grep -E '^skip'$'\t' "$list")
  set -- "${units[@]}"
fi
if [[ $# -eq 0 ]]; then
  sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
version=$(dpkg-query -W -f='${Version}' redis-server)
src="$root/build/redis-tests/src-$version"
if [[ ! -x "$src/runtest" ]]; then
  echo "redis-integration: no Redis test suite in $src: run tools/redis-tests.sh once first" >&2
  exit 1
fi
[[ -x "$server" ]] || { echo "redis-integration: no keg-server at $server" >&2; exit 1; }
work=$(mktemp -d /tmp/keg-redis-integration.XXXXXX)
# KEG_INTEGRATION_VERBOSE also keeps the scratch copy (the servers' logs are in its tests/tmp).
if [[ -z "${KEG_INTEGRATION_VERBOSE:-}" ]]; then trap 'rm -rf "$work"' EXIT; else echo "scratch copy: $work"; fi
cp -r "$src/." "$work/"
mkdir -p "$work/src"
cat > "$work/src/redis-server" <<EOF
#!/usr/bin/env bash
if [[ -f "\${1:-}" ]]; then
  # In place: CONFIG REWRITE then writes the file the harness starts the server from again.
  sed -i -E '/^appendonly no/d' "\$1"
fi
exec "$server" "\$@"
EOF
chmod +x "$work/src/redis-server"
ln -sf "$(command -v redis-cli)" "$work/src/redis-cli"
ln -sf "$(command -v redis-benchmark)" "$work/src/redis-benchmark"
args=()
for unit in "$@"; do args+=(--single "$unit"); done
args+=("${skips[@]}")
# KEG_INTEGRATION_ARGS: more of the harness's options, e.g. '--skiptest NAME' or '--only NAME'.
read -r -a extra <<< "${KEG_INTEGRATION_ARGS:-}"
args+=("${extra[@]}")
[[ -n "${KEG_INTEGRATION_VERBOSE:-}" ]] && args+=(--dont-clean)
cd "$work"
set +e
# KEG_INTEGRATION_VERBOSE=1: the harness's whole output. Otherwise its [ok] / [err] lines, with
# up to four lines after an [err] or [exception]: the failed assertion (the reason a flaky
# test failed in a CI log).
filter='^\[(ok|err|exception)\]|done\]|TIMEOUT|All tests passed|failed'
[[ -n "${KEG_INTEGRATION_VERBOSE:-}" ]] && filter='.'
tclsh tests/test_helper.tcl "${args[@]}" --clients 3 --timeout 120 2>&1 |
  sed 's/\x1b\[[0-9;]*m//g' |
  awk -v f="$filter" '$0 ~ f { print; after = ($0 ~ /^\[(err|exception)\]/) ? 4 : 0; next }
                      after > 0 && $0 !~ /^\[/ { print; after--; next } { after = 0 }'
status=${PIPESTATUS[0]}
exit "$status"
