#!/usr/bin/env bash
# End-to-end tests under QEMU: builds the images when they are missing or stale, and the
# scenario fleet's releases, then boots them with the stock U-Boot (ava, test/integration/),
# two devices at a time. Arguments go to ava (e.g. --match). Ends with one line per scenario
# and "N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-image.sh
node --import tsx test/integration/prepare-fleet.ts
results=$(mktemp)
trap 'rm -f "$results"' EXIT
status=0
EDGE_FLEET_PREPARED=1 EDGE_SCENARIO_RESULTS=$results npx ava --config test/integration/ava.config.js "$@" || status=$?
node --import tsx test/integration/scenario-summary.ts "$results"
exit "$status"
