#!/usr/bin/env bash
# Install the services the scale-out tests start on localhost (tests/test_scale_out.py): PostgreSQL (the
# Dagster instance) and Redis (the Celery broker), from Debian packages, when they are missing. Needs root or
# passwordless sudo and apt-get; otherwise it says what is missing and those tests skip with that message.
# The packages' own services are not used: the tests start throwaway servers on free loopback ports.
set -uo pipefail
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
if ! command -v pg_ctl >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  need+=(postgresql)
fi
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ]; then SUDO=(); elif sudo -n true 2>/dev/null; then SUDO=(sudo -n); else SUDO=(none); fi
if [ "${SUDO[0]:-}" = none ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "[services] missing ${need[*]} and no root/apt-get to install them: the scale-out tests will skip" >&2
  exit 0
fi
echo "[services] installing ${need[*]} (Debian packages)"
export DEBIAN_FRONTEND=noninteractive
if ! "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null 2>&1; then
  "${SUDO[@]}" apt-get update -q >/dev/null 2>&1
  "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
    || echo "[services] could not install ${need[*]}: the scale-out tests will skip" >&2
fi
exit 0
