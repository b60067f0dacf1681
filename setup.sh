#!/usr/bin/env bash
# Sets Steward up on a fresh Debian/Ubuntu machine that has Node.js >= 20:
# nats-server (Debian's package) when it is missing, the npm packages, the build.
# Safe to run again: it skips what is already done.
set -euo pipefail
cd "$(dirname "$0")"

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: %s\n' "$*" >&2; exit 1; }

command -v node >/dev/null || die "Node.js is not installed: install Node.js 20 or newer (https://nodejs.org), then run ./setup.sh again"
major=$(node -p 'process.versions.node.split(".")[0]')
[ "$major" -ge 20 ] || die "Node.js $(node --version) is too old: Steward needs Node.js 20 or newer"

if command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || [ -n "${NATS_SERVER_BIN:-}" ]; then
  :
else
  command -v apt-get >/dev/null || die "nats-server is missing and this is not Debian/Ubuntu: install nats-server (https://nats.io) and put it on PATH, or set NATS_SERVER_BIN"
  if [ "$(id -u)" -eq 0 ]; then sudo=""
  elif command -v sudo >/dev/null; then sudo="sudo"
  else die "nats-server is missing and installing it needs root: run 'apt-get install -y nats-server' as root, then ./setup.sh again"
  fi
  say "installing nats-server (Debian package)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nats-server >/dev/null
  # The package starts a system service on 4222; Steward's demo and tests start their own servers.
fi

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm packages (better-sqlite3 builds from source: about a minute)"
  npm ci --no-audit --no-fund
fi
say "building"
npm run --silent build
say "ready: node dist/cli/main.js --help"
