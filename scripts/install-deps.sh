#!/usr/bin/env bash
# Installs what this project needs on a Debian bookworm host: the Debian packages
# (apt-get, as root or through sudo) and the npm packages (npm ci, from the lock file).
# Quick when everything is there already, so `npm start` and `npm test` call it first.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages, each with what needs it.
packages=(
  e2fsprogs # mke2fs -d: slot images, and the tests that make them
  libubootenv-tool # fw_printenv/fw_setenv: the U-Boot env codec's tests against the stock tools
  golang-go # bench: the Go net/http peer
  wrk       # bench: the HTTP load generator
  curl      # scripts: health checks
  qemu-system-arm u-boot-qemu # QEMU virt board and its stock U-Boot (qemu_arm64)
  u-boot-tools genimage mtools dosfstools cpio kmod fdisk xz-utils # image build (mkimage, depmod)
  busybox-static # image build: the applet list for the device's busybox (same version)
  bsdiff    # delta tests: stock bspatch must apply our BSDIFF40 deltas
  bzip2     # delta generator: compresses the BSDIFF40 blocks
  xdelta3   # bench: delta peer
  zstd      # bench: delta peer (--patch-from)
  time      # bench: peak RSS of peer tools (/usr/bin/time -v)
  rt-tests  # bench: cyclictest, the machine's own wake-up latency beside the scheduler's
  postgresql # update server: the PostgreSQL fleet store's tests (a throwaway cluster)
  openssl    # edge server: test certificates for the TLS tests
  chromium   # update server: the dashboard's tests in a real browser (puppeteer-core drives it)
)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' ||
    missing+=("$package")
done

# QEMU 10 from bookworm-backports: bookworm's QEMU 7.2 has no raspi4b board (the Pi 4 tests).
backports=/etc/apt/sources.list.d/bookworm-backports.sources
qemu_backports=0
qemu-system-aarch64 -M help 2>/dev/null | grep -q '^raspi4b ' || qemu_backports=1

if ((${#missing[@]} || qemu_backports)); then
  ((qemu_backports)) && echo "install-deps: installing QEMU 10 from bookworm-backports" >&2
  ((${#missing[@]})) && echo "install-deps: installing Debian packages: ${missing[*]}" >&2
  sudo=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null || {
      echo "install-deps: need root to install ${missing[*]}: run this script as root" >&2
      exit 1
    }
    sudo=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  if ((qemu_backports)) && [[ ! -f $backports ]]; then
    printf '%s\n' 'Types: deb' 'URIs: http://deb.debian.org/debian' 'Suites: bookworm-backports' \
      'Components: main' 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' |
      "${sudo[@]}" tee "$backports" >/dev/null
  fi
  "${sudo[@]}" apt-get update -qq
  ((${#missing[@]})) && "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if ((qemu_backports)); then
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends -t bookworm-backports qemu-system-arm >/dev/null
  fi
fi

# U-Boot's own fw_printenv/fw_setenv, which Debian does not ship: built once, then cached.
scripts/build-uboot-envtools.sh >/dev/null

# npm packages: reinstall only when the lock file changed since the last install.
stamp=node_modules/.install-stamp
lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$lock_hash" ]]; then
  echo "install-deps: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_hash" >"$stamp"
fi
