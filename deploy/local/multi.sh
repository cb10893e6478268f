#!/usr/bin/env bash
# multi.sh: several `flashhold serve` instances on one Redis and one Postgres database, as a
# deployment behind a load balancer runs them. Each instance serves the demo catalog on a
# port of its own; they share the background work through leases in Redis (sweeper,
# persister partitions, rebalancer, alerts, scheduled reconciliation). Kill one with
# `kill -9 PID` and watch the others take its leases over. Ctrl-C stops the instances it
# started (by their pids); Redis and Postgres stay up (`make stop` stops what up.sh started).
#
#   FLASHHOLD_LOCAL_MULTI_N          (2)    instances
#   FLASHHOLD_LOCAL_MULTI_PORT       (8081) the first instance's HTTP port; the next ones count up
#   FLASHHOLD_LOCAL_MULTI_REDIS_PORT (6392) the stack's own Redis (append-only file), started by up.sh
#   FLASHHOLD_LOCAL_MULTI_DB         (flashhold_multi) the stack's own Postgres database
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
n=${FLASHHOLD_LOCAL_MULTI_N:-2}
first=${FLASHHOLD_LOCAL_MULTI_PORT:-8081}
redis_port=${FLASHHOLD_LOCAL_MULTI_REDIS_PORT:-6392}
db=${FLASHHOLD_LOCAL_MULTI_DB:-flashhold_multi}
logs=$root/.local/multi
mkdir -p "$logs"

FLASHHOLD_LOCAL_REDIS_PORT=$redis_port deploy/local/up.sh
if ! psql -h 127.0.0.1 -U postgres -d postgres -Atqc "SELECT 1 FROM pg_database WHERE datname = '$db'" </dev/null | grep -q 1; then
  psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE $db" </dev/null
fi
make -s build

export FLASHHOLD_REDIS_URL=redis://127.0.0.1:$redis_port/0
export FLASHHOLD_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/$db?sslmode=disable
export FLASHHOLD_API_KEYS_FILE=${FLASHHOLD_API_KEYS_FILE:-deploy/demo/api-keys.json}
export FLASHHOLD_RECONCILE_EVERY=${FLASHHOLD_RECONCILE_EVERY:-1m}
bin/flashhold migrate
bin/flashhold stock load --missing deploy/demo/catalog.csv

pids=()
stop() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  echo "multi.sh: stopped ${pids[*]}"
}
trap stop INT TERM EXIT

for i in $(seq 0 $((n - 1))); do
  port=$((first + i))
  FLASHHOLD_HTTP_ADDR=127.0.0.1:$port bin/flashhold serve >"$logs/serve-$port.log" 2>&1 &
  pids+=("$!")
  echo "multi.sh: instance $i on http://127.0.0.1:$port, pid $!, log $logs/serve-$port.log"
done
cat <<TXT

Send requests to any instance (keys as in deploy/demo/run.sh), e.g.
  curl -s http://127.0.0.1:$first/v1/availability/flash-sneaker-01?location=store-berlin -H 'X-API-Key: demo-client-key'
Who holds the background work (each lease's value names host, pid and a random suffix):
  for k in \$(redis-cli -p $redis_port --scan --pattern 'fh:lease:*'); do echo "\$k \$(redis-cli -p $redis_port get \$k)"; done
Kill an instance (kill -9 PID) and run that again: its leases move to the others within
their lease time (sweeper 2 s, persister 5 s, alerts 2 s). Ctrl-C stops every instance.

TXT
# Returns when any instance exits (killed by hand, or failed): the others keep serving.
while true; do
  wait -n "${pids[@]}" 2>/dev/null || true
  alive=()
  for pid in "${pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then alive+=("$pid"); fi
  done
  [ ${#alive[@]} -eq 0 ] && break
  echo "multi.sh: ${#alive[@]} of $n instances running (${alive[*]})"
  pids=("${alive[@]}")
done
