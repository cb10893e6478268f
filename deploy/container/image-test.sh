#!/usr/bin/env bash
# `make image-test`: runs the built image without a container runtime. It exports the image's
# root filesystem, then, with chroot as the image's user, runs `flashhold version`, migrates a
# database of its own, loads a pool, serves, and checks /healthz, /readyz and a hold placed
# through the API against the local Redis and PostgreSQL. Everything it starts or creates (the
# serve process, the database, the Redis keys under its own prefix, the directory) it removes.
#   IMAGE           the image (default localhost/flashhold:latest); built first when missing or
#                   built from another revision
#   REDIS_HOST/PORT the local Redis (127.0.0.1:6379)
#   PGHOST/PGPORT   the local PostgreSQL (127.0.0.1:5432, user postgres)
set -euo pipefail
cd "$(dirname "$0")/../.."

IMAGE=${IMAGE:-localhost/flashhold:latest}
REDIS_HOST=${REDIS_HOST:-127.0.0.1} REDIS_PORT=${REDIS_PORT:-6379}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}

say() { echo "image-test: $*" >&2; }
fail() { say "FAIL: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "chroot needs root"
tool=$(deploy/container/install-tool.sh)

# The image must be this checkout's: a clean tree's revision, as build.sh labels it.
want=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
have=$("$tool" image inspect --format '{{index .Config.Labels "org.opencontainers.image.version"}}' "$IMAGE" 2>/dev/null || true)
if [ "$have" != "$want" ] || [[ "$want" == *-dirty ]] || [ "$want" = dev ]; then
	say "building $IMAGE (image is '${have:-missing}', checkout is $want)"
	IMAGE=$IMAGE deploy/container/build.sh
fi

run_id=imgtest$$$RANDOM
root=$(mktemp -d /tmp/flashhold-image-test.XXXXXX)
chmod 755 "$root" # mktemp makes it 0700: the image's user must reach its own /
db=flashhold_$run_id
prefix=fh$run_id
serve_pid=
cid=

cleanup() {
	set +e
	if [ -n "$serve_pid" ] && kill -0 "$serve_pid" 2>/dev/null; then
		kill "$serve_pid"
		wait "$serve_pid" 2>/dev/null
	fi
	[ -n "$cid" ] && "$tool" rm -f "$cid" >/dev/null 2>&1
	psql -q -d postgres -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1
	redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" --scan --pattern "$prefix*" |
		xargs -r -n 500 redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" unlink >/dev/null
	rm -rf "$root"
}
trap cleanup EXIT

# The root filesystem, as a container of the image would see it (created, never started).
cid=$("$tool" create --no-healthcheck "$IMAGE")
"$tool" export "$cid" | tar -x -C "$root"
"$tool" rm -f "$cid" >/dev/null
cid=
user=$("$tool" image inspect --format '{{.Config.User}}' "$IMAGE")
entry=$("$tool" image inspect --format '{{index .Config.Entrypoint 0}}' "$IMAGE")
[ -n "$user" ] && [ "${user%%:*}" != 0 ] && [ "${user%%:*}" != root ] || fail "image runs as '$user', want a user that is not root"
[ -x "$root$entry" ] || fail "entrypoint $entry is not in the image"
[ -s "$root/etc/ssl/certs/ca-certificates.crt" ] || fail "no CA bundle"
[ -f "$root/usr/share/zoneinfo/Europe/Berlin" ] || fail "no time zone data"
say "exported $IMAGE ($(du -sh "$root" | cut -f1)), user $user, entrypoint $entry"

# Inside the image: its user, none of this host's environment but what is passed.
port=$(( 20000 + RANDOM % 20000 ))
while ss -Htln "sport = :$port" | grep -q .; do port=$(( 20000 + RANDOM % 20000 )); done
key=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
sha=$(printf %s "$key" | sha256sum | cut -d' ' -f1)
# One simple command, env -> chroot -> flashhold each exec'ing the next, so that the pid of a
# background run is serve's own and its signals reach it.
inimage=(env -i PATH=/usr/local/bin HOME=/var/lib/flashhold
	FLASHHOLD_REDIS_URL="redis://$REDIS_HOST:$REDIS_PORT/0"
	FLASHHOLD_KEY_PREFIX="$prefix"
	FLASHHOLD_POSTGRES_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$db?sslmode=disable"
	FLASHHOLD_HTTP_ADDR="127.0.0.1:$port"
	FLASHHOLD_API_KEYS="imagetest:client:$sha"
	FLASHHOLD_LOG_LEVEL=warn
	"$(command -v chroot)" --userspec="$user" "$root" "$entry")

out=$("${inimage[@]}" version) || fail "flashhold version exited $?"
[[ "$out" == "flashhold $want "* ]] || fail "flashhold version printed '$out', want 'flashhold $want ...'"
say "ok: $out"

psql -q -d postgres -c "CREATE DATABASE $db" >/dev/null
"${inimage[@]}" migrate >/dev/null || fail "flashhold migrate"
printf 'location,sku,vendor,stock,shards,low_stock,customer_limit\nimage-test,sku-1,acme,5,1,0,0\n' >"$root/tmp/catalog.csv"
"${inimage[@]}" stock load /tmp/catalog.csv >/dev/null || fail "flashhold stock load"

"${inimage[@]}" serve >"$root/tmp/serve.log" 2>&1 &
serve_pid=$!
base=http://127.0.0.1:$port
for _ in $(seq 1 100); do
	curl -fs "$base/healthz" >/dev/null 2>&1 && break
	kill -0 "$serve_pid" 2>/dev/null || { cat "$root/tmp/serve.log" >&2; fail "serve exited"; }
	sleep 0.1
done
curl -fs "$base/healthz" | grep -q '"ok"' || fail "/healthz did not answer ok"
"${inimage[@]}" health --url "$base/healthz" || fail "the image's health check failed"
say "ok: serve answers /healthz (pid $serve_pid, port $port), health check passes"
for _ in $(seq 1 50); do
	curl -fs "$base/readyz" >/dev/null 2>&1 && break
	sleep 0.2
done
curl -fs "$base/readyz" >/dev/null || fail "/readyz: $(curl -s "$base/readyz")"

code=$(curl -s -o "$root/tmp/hold.json" -w '%{http_code}' -X POST "$base/v1/holds" \
	-H "X-API-Key: $key" -H "Idempotency-Key: image-test-1" \
	-d '{"location":"image-test","sku":"sku-1","qty":2,"customer_id":"c-1"}')
[ "$code" = 201 ] && grep -q '"status":"ACTIVE"' "$root/tmp/hold.json" ||
	fail "POST /v1/holds answered $code $(cat "$root/tmp/hold.json")"
avail=$(curl -s "$base/v1/availability/sku-1?location=image-test" -H "X-API-Key: $key")
say "ok: hold $(grep -o '"hold_id":"[^"]*"' "$root/tmp/hold.json"); availability $avail"

kill "$serve_pid"
wait "$serve_pid" || fail "serve exited $? on SIGTERM"
serve_pid=
say "ok: serve stopped cleanly on SIGTERM"
say "PASS"
