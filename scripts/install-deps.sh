#!/usr/bin/env bash
# Installs what this project needs on a Debian bookworm host: the Debian packages
# (apt-get, as root or through sudo) and the npm packages (npm ci, from the lock file).
# Quick when everything is there already, so `npm start` and `npm test` call it first.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages, each with what needs it.
packages=(
  e2fsprogs # mke2fs -d: slot images, and the tests that make them
  golang-go # bench: the Go net/http peer
  wrk       # bench: the HTTP load generator
  curl      # scripts: health checks
)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' ||
    missing+=("$package")
done

if ((${#missing[@]})); then
  echo "install-deps: installing Debian packages: ${missing[*]}" >&2
  sudo=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null || {
      echo "install-deps: need root to install ${missing[*]}: run this script as root" >&2
      exit 1
    }
    sudo=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm packages: reinstall only when the lock file changed since the last install.
stamp=node_modules/.install-stamp
lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$lock_hash" ]]; then
  echo "install-deps: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_hash" >"$stamp"
fi
