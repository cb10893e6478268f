#!/usr/bin/env bash
# run.sh: start the demo's own Redis (with an append-only file) and PostgreSQL, load the demo
# catalog where its pools are missing, print a few requests that work as printed, serve the API.
#
#   FLASHHOLD_DEMO_REDIS_PORT (6390) the demo's Redis, started by deploy/local/up.sh, which
#                                    keeps its data across restarts
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
port=${FLASHHOLD_DEMO_REDIS_PORT:-6390}
FLASHHOLD_LOCAL_REDIS_PORT=$port deploy/local/up.sh
export FLASHHOLD_REDIS_URL=${FLASHHOLD_REDIS_URL:-redis://127.0.0.1:$port/0}
export FLASHHOLD_API_KEYS_FILE=${FLASHHOLD_API_KEYS_FILE:-deploy/demo/api-keys.json}
export FLASHHOLD_HTTP_ADDR=${FLASHHOLD_HTTP_ADDR:-127.0.0.1:8080}
bin/flashhold migrate
# Only pools that do not exist: a restart never sets stock over units already sold.
bin/flashhold stock load --missing deploy/demo/catalog.csv
base=http://$FLASHHOLD_HTTP_ADDR
cat <<TXT

Demo keys: demo-client-key (checkout), demo-acme-key (vendor acme), demo-bistro-key (vendor
bistro), demo-admin-key (admin). Try, in another terminal:

  curl -s -X POST $base/v1/holds -H 'X-API-Key: demo-client-key' -H "Idempotency-Key: \$(date +%s%N)" \\
       -d '{"location":"store-berlin","sku":"flash-sneaker-01","qty":1,"customer_id":"c-42"}'
  curl -s -X POST $base/v1/holds/HOLD_ID/commit -H 'X-API-Key: demo-client-key'
  curl -s '$base/v1/availability/flash-sneaker-01?location=store-berlin' -H 'X-API-Key: demo-client-key'
  curl -s $base/v1/vendors/acme/inventory -H 'X-API-Key: demo-acme-key'
  curl -s -X POST $base/v1/vendors/acme/inventory/cap-red/update -H 'X-API-Key: demo-acme-key' \\
       -d '{"location":"store-berlin","change_type":"RESTOCK","quantity_change":25,"transaction_id":"po-1001"}'
  curl -s '$base/v1/inventory/events?limit=5' -H 'X-API-Key: demo-acme-key'
  curl -s $base/metrics | grep flashhold_

(HOLD_ID: the hold_id the first request printed.) Serving on $base; Ctrl-C stops.

TXT
exec bin/flashhold serve
