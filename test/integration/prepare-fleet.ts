// Builds and publishes every release of the scenario fleet before the scenarios start, so
// that scenarios running side by side find it ready (scripts/qemu-test.sh runs this first).
import { Fleet } from './fleet.js';
import { RELEASES, SCENARIO_FLEET_DIR } from './update-scenarios.js';

const fleet = new Fleet(SCENARIO_FLEET_DIR, (line) => process.stderr.write(`fleet: ${line}\n`));
const releases = fleet.prepare(Object.values(RELEASES));
for (const release of Object.values(releases)) {
  process.stderr.write(`fleet: ${release.version} ${release.sha256.slice(0, 16)}… published\n`);
}
