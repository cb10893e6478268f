#!/usr/bin/env bash
# down.sh: stop the servers that up.sh started under .local/ (never any other).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
data=${FLASHHOLD_LOCAL_DATA:-$root/.local}
if [ -f "$data/redis/redis.pid" ]; then
  kill "$(cat "$data/redis/redis.pid")" 2>/dev/null && echo "down.sh: redis stopped"
fi
if [ -f "$data/pg/data/postmaster.pid" ]; then
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  runuser -u postgres -- "$bin/pg_ctl" -D "$data/pg/data" -m fast stop >/dev/null && echo "down.sh: postgres stopped"
fi
exit 0
