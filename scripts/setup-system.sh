#!/usr/bin/env bash
# Install the system packages the server and test suite use (redis-server, haproxy, chromium, a CJK font, Java for Spark), when missing and when we can (root + apt).
# Never fails the build: tests that need a missing tool skip with a clear reason.
set -u
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
# the proxy in front of `funnel serve --workers N`
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# the JVM PySpark starts for the Spark engine (pipeline on Spark, funnel build --engine spark)
command -v java >/dev/null 2>&1 || need+=(default-jre-headless)
# a CJK font, so page screenshots show the Chinese titles instead of empty boxes
fc-list :lang=zh 2>/dev/null | grep -q . || need+=(fonts-wqy-microhei)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-system: cannot install ${need[*]} (need root and apt-get); dependent tests will skip" >&2
  exit 0
fi
echo "setup-system: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || true
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
  || echo "setup-system: apt-get install ${need[*]} failed; dependent tests will skip" >&2
exit 0
