#!/usr/bin/env bash
# System packages the integration tests need: redis-server (Debian) and Chromium for the report
# test. PostgreSQL 15 binaries are expected under /usr/lib/postgresql/15/bin (tests start a
# throwaway cluster). Installs only what is missing, and only as root; otherwise says what to do.
set -euo pipefail
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "system-deps: missing ${missing[*]}; install them (apt-get install -y ${missing[*]}) or run as root" >&2
  exit 0
fi
echo "system-deps: installing ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
