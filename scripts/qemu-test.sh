#!/usr/bin/env bash
# End-to-end tests under QEMU: builds the images when they are missing or stale, then boots
# them with the stock U-Boot (ava, test/integration/). Arguments go to ava (e.g. --match).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-image.sh
exec npx ava --config test/integration/ava.config.js "$@"
