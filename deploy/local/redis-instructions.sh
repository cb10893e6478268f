#!/usr/bin/env bash
# redis-instructions.sh: run a command against a private Redis running under valgrind's
# callgrind, and print the instructions that Redis executed.
#
# Instruction counts repeat for the same binaries and inputs however busy the machine is, so
# two versions of the Lua code can be compared where timings on a shared machine cannot.
# The command gets FLASHHOLD_TEST_REDIS_URL pointing at that Redis (the engine's tests and
# benchmarks use it), for example:
#
#   deploy/local/redis-instructions.sh go test ./engine -run '^$' \
#       -bench 'Reserve/single/1-caller' -benchtime 4000x
#
#   FLASHHOLD_CALLGRIND_PORT  (6391)  loopback port of the private Redis
set -euo pipefail

port=${FLASHHOLD_CALLGRIND_PORT:-6391}
if [ $# -eq 0 ]; then
  echo "usage: $0 command [args...]" >&2
  exit 2
fi
for tool in valgrind redis-server redis-cli; do
  if ! command -v "$tool" >/dev/null; then
    echo "redis-instructions.sh: $tool is not installed" >&2
    exit 1
  fi
done
dir=$(mktemp -d)
trap 'redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT

valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" \
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
  >"$dir/redis.log" 2>&1 &
vg=$!
for _ in $(seq 100); do
  redis-cli -p "$port" ping >/dev/null 2>&1 && break
  sleep 0.2
done
if ! redis-cli -p "$port" ping >/dev/null 2>&1; then
  echo "redis-instructions.sh: Redis under callgrind did not start; its log:" >&2
  cat "$dir/redis.log" >&2
  exit 1
fi

status=0
FLASHHOLD_TEST_REDIS_URL="redis://127.0.0.1:$port/0" "$@" || status=$?
redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
wait "$vg" || true
total=$(awk '/^(summary|totals):/ {print $2; exit}' "$dir/callgrind.out")
echo "redis-instructions.sh: Redis executed $total instructions"
exit "$status"
