#!/usr/bin/env bash
# sentinel.sh: make redis-sentinel available for the Sentinel failover test (Debian's package).
set -euo pipefail
if command -v redis-sentinel >/dev/null; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "sentinel.sh: redis-sentinel is missing and apt-get is not available; the Sentinel failover test will be skipped" >&2
  exit 0
fi
echo "sentinel.sh: installing redis-sentinel from Debian's packages"
apt-get update -qq
# The tests start Sentinels of their own on free ports; the service the package installs
# (port 26379, started only where systemd runs) is not used.
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-sentinel >/dev/null
