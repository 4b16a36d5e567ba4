#!/usr/bin/env bash
# Installs Debian's chromium for the browser tests when it is missing and we may use apt-get.
# Never downloads a browser build of its own (Playwright drives the system chromium).
set -u
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's chromium for the browser tests..." >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null && exit 0
fi
echo "note: chromium is not installed; the browser tests will be skipped" \
     "(install your distribution's chromium package to run them)" >&2
exit 0
