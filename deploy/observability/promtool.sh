#!/usr/bin/env bash
# promtool.sh: check the Prometheus rules and run their unit tests (`make rules-test`).
# promtool comes with Debian's prometheus package, installed here when it is missing.
set -euo pipefail
cd "$(dirname "$0")/prometheus"
if ! command -v promtool >/dev/null; then
  if ! command -v apt-get >/dev/null; then
    echo "promtool.sh: promtool is missing and apt-get is not available" >&2
    exit 1
  fi
  echo "promtool.sh: installing promtool from Debian's prometheus package"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
promtool check rules rules.yml
promtool test rules rules_test.yml
