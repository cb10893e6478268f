#!/usr/bin/env bash
# down.sh: stop the servers that up.sh started under .local/ (never any other).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
data=${FLASHHOLD_LOCAL_DATA:-$root/.local}
for pidfile in "$data"/redis*/redis.pid; do
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  if kill "$pid" 2>/dev/null; then
    # Wait for it to exit, so that an up.sh right after does not find it still answering.
    for _ in $(seq 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "down.sh: redis (pid $pid) still running after 10 s" >&2
    else
      echo "down.sh: redis stopped ($(dirname "$pidfile"))"
    fi
  fi
done
if [ -f "$data/pg/data/postmaster.pid" ]; then
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  runuser -u postgres -- "$bin/pg_ctl" -D "$data/pg/data" -m fast stop >/dev/null && echo "down.sh: postgres stopped"
fi
exit 0
