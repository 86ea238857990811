#!/usr/bin/env bash
# Install what the player tests (tests/players) drive: Debian's Chromium (Playwright talks to it;
# no browser build is ever downloaded), fonts for readable screenshots, Node.js/npm, and the
# pinned hls.js from tests/browser/package-lock.json (npm ci into tests/browser/node_modules).
# A fast no-op when everything is there and node_modules matches the lock file.
#
#   scripts/ensure-browser.sh
set -euo pipefail

cd "$(dirname "$0")/.."

say() { echo "ensure-browser: $*"; }
die() { echo "ensure-browser: ERROR: $*" >&2; exit 1; }

SUDO=()
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
fi

APT_UPDATED=0
apt_install() {
  [ "$(id -u)" = 0 ] || [ ${#SUDO[@]} -gt 0 ] || die "need root or sudo to install: $*"
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install these yourself: $*"
  if [ "$APT_UPDATED" = 0 ]; then
    say "apt-get update"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    APT_UPDATED=1
  fi
  say "apt-get install $*"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

CHROMIUM=${CHROMIUM_PATH:-/usr/bin/chromium}
missing=()
[ -x "$CHROMIUM" ] || missing+=(chromium)
# Without any font the docs screenshot shows empty boxes; DejaVu is small and enough.
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  apt_install "${missing[@]}"
fi
say "chromium: $("$CHROMIUM" --version 2>/dev/null || echo "not runnable at $CHROMIUM")"

# npm ci only when node_modules is older than the lock file (npm ci writes node_modules/.package-lock.json).
BROWSER_DIR=tests/browser
if [ "$BROWSER_DIR/node_modules/.package-lock.json" -nt "$BROWSER_DIR/package-lock.json" ]; then
  say "hls.js: ok ($BROWSER_DIR/node_modules is current)"
else
  say "npm ci in $BROWSER_DIR"
  (cd "$BROWSER_DIR" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
  touch "$BROWSER_DIR/node_modules/.package-lock.json"
fi
