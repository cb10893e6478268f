#!/usr/bin/env bash
# browser.sh: make headless Chromium available for the report rendering test (Debian's package).
set -euo pipefail
if command -v chromium >/dev/null; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "browser.sh: chromium is missing and apt-get is not available; the render test will be skipped" >&2
  exit 0
fi
echo "browser.sh: installing chromium from Debian's packages"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
