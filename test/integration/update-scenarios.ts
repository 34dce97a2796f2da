import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext } from 'ava';
import { Fleet, type ReleaseSpec } from './fleet.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** The fleet every update scenario (and the demo's test) shares: built and published once. */
export const SCENARIO_FLEET_DIR = join(process.env.EDGE_OUT ?? join(ROOT, 'out'), 'qemu-fleet');

/** v1 and v2, the demo's releases. */
export const BASE_RELEASES: ReleaseSpec[] = [{ version: '1.0.0' }, { version: '1.1.0' }];

export function scenarioFleet(t: ExecutionContext): Fleet {
  return new Fleet(SCENARIO_FLEET_DIR, (line) => t.log(line));
}

/** A logger for a scenario: lines with the seconds since it started. */
export function timeline(t: ExecutionContext): (line: string) => void {
  const started = performance.now();
  return (line) =>
    t.log(`[${((performance.now() - started) / 1000).toFixed(0).padStart(4)} s] ${line}`);
}
