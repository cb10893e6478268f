#!/usr/bin/env bash
# up.sh: make Redis and PostgreSQL reachable for flashhold on this machine.
#
# A server that already answers is used as it is. Otherwise this starts one, installing it
# from Debian's packages (apt-get) when it is missing, with its data under .local/ in the
# project. Safe to run any number of times.
#
#   FLASHHOLD_LOCAL_REDIS_PORT       (6379)     Redis port on 127.0.0.1
#   FLASHHOLD_LOCAL_REDIS_APPENDFSYNC (everysec) a Redis started here keeps an append-only
#                                    file: everysec (at most a second of writes lost when the
#                                    machine fails), always, or no
#   FLASHHOLD_LOCAL_PG_PORT          (5432)     PostgreSQL port on 127.0.0.1 (user postgres, trust auth)
#   FLASHHOLD_LOCAL_DATA             (.local)   where started servers keep their files
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
data=${FLASHHOLD_LOCAL_DATA:-$root/.local}
redis_port=${FLASHHOLD_LOCAL_REDIS_PORT:-6379}
appendfsync=${FLASHHOLD_LOCAL_REDIS_APPENDFSYNC:-everysec}
pg_port=${FLASHHOLD_LOCAL_PG_PORT:-5432}
apt_updated=

say() { echo "up.sh: $*"; }

apt_install() {
  if ! command -v apt-get >/dev/null; then
    say "cannot install $* (no apt-get); install it and run again" >&2
    exit 1
  fi
  if [ -z "$apt_updated" ]; then
    apt-get update -qq
    apt_updated=1
  fi
  say "installing $* from Debian's packages"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

redis_answers() {
  # A PING over bash's /dev/tcp: needs no client installed. The subshell keeps bash's own
  # "connection refused" message quiet.
  local reply
  reply=$( { exec 3<>"/dev/tcp/127.0.0.1/$redis_port" && printf 'PING\r\n' >&3 && read -r -t 2 line <&3 && echo "$line"; } 2>/dev/null ) || return 1
  [[ "$reply" == +PONG* ]]
}

redis_up() {
  if redis_answers; then
    say "redis answers on 127.0.0.1:$redis_port"
    return
  fi
  command -v redis-server >/dev/null || apt_install redis-server
  local dir=$data/redis-$redis_port
  mkdir -p "$dir"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$redis_port" --dir "$dir" \
    --save "" --appendonly yes --appendfsync "$appendfsync" \
    --logfile "$dir/redis.log" --pidfile "$dir/redis.pid"
  for _ in $(seq 300); do
    redis_answers && { say "redis started on 127.0.0.1:$redis_port (append-only file, fsync $appendfsync, in $dir)"; return; }
    sleep 0.1
  done
  say "redis did not start; see $dir/redis.log" >&2
  exit 1
}

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

pg_trusts() {
  PGCONNECT_TIMEOUT=3 psql -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1 </dev/null
}

pg_answers() { "$(pg_bin)/pg_isready" -h 127.0.0.1 -p "$pg_port" -q 2>/dev/null; }

pg_up() {
  [ -n "$(pg_bin)" ] && command -v psql >/dev/null || apt_install postgresql postgresql-client
  local bin
  bin=$(pg_bin)
  if pg_answers; then
    if pg_trusts; then
      say "postgres answers on 127.0.0.1:$pg_port"
      return
    fi
    say "postgres on 127.0.0.1:$pg_port refuses user postgres without a password; configure trust auth for 127.0.0.1" >&2
    exit 1
  fi
  # The machine's own Debian cluster on this port, if there is one and it trusts local TCP.
  if command -v pg_lsclusters >/dev/null; then
    local line
    line=$(pg_lsclusters -h 2>/dev/null | awk -v p="$pg_port" '$3 == p {print $1, $2; exit}')
    if [ -n "$line" ]; then
      # shellcheck disable=SC2086
      pg_ctlcluster --skip-systemctl-redirect $line start >/dev/null 2>&1 || true
      for _ in $(seq 50); do pg_answers && break; sleep 0.2; done
      if pg_answers && pg_trusts; then
        say "postgres cluster $line started on 127.0.0.1:$pg_port"
        return
      fi
      # shellcheck disable=SC2086
      pg_answers && pg_ctlcluster --skip-systemctl-redirect $line stop >/dev/null 2>&1 || true
    fi
  fi
  # A project-local cluster with trust auth, owned by the postgres system user.
  local dir=$data/pg
  id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql postgres
  mkdir -p "$dir"
  chmod 755 "$data"
  chown postgres "$dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    runuser -u postgres -- "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >/dev/null
  fi
  mkdir -p "$dir/run" && chown postgres "$dir/run"
  runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 30 \
    -o "-p $pg_port -c listen_addresses=127.0.0.1 -k $dir/run -c fsync=on" start >/dev/null
  pg_trusts || { say "postgres did not start; see $dir/postgres.log" >&2; exit 1; }
  say "postgres started on 127.0.0.1:$pg_port (data in $dir/data)"
}

# The database flashhold's own commands use (tests make their own schemas in "postgres").
pg_database() {
  if ! psql -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -Atqc "SELECT 1 FROM pg_database WHERE datname = 'flashhold'" </dev/null | grep -q 1; then
    psql -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -qc "CREATE DATABASE flashhold" </dev/null
    say "database flashhold created"
  fi
}

redis_up
pg_up
pg_database
