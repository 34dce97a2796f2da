#!/usr/bin/env bash
# The Pi 4 SD card image under QEMU's raspi4b (test/integration/rpi4.test.ts): builds the images
# and the scenario fleet when missing or stale, then boots the very card `npm run image` wrote,
# with its own U-Boot.
# --when-ci: run only when $CI is set (npm test); other arguments go to ava (e.g. --match).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ${1:-} == --when-ci ]]; then
  shift
  [[ -n ${CI:-} ]] || { echo "rpi4-test: CI is not set: skipping the raspi4b tests (npm run test:rpi4)" >&2; exit 0; }
fi
scripts/build-image.sh
# The update scenario runs the scenario fleet's v1 card against its update server.
node --import tsx test/integration/prepare-fleet.ts
EDGE_FLEET_PREPARED=1 exec npx ava --config test/integration/rpi4.ava.config.js "$@"
