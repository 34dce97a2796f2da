import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext } from 'ava';
import { FLEET_BOARD, Fleet, type Release, type ReleaseSpec } from './fleet.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** The fleet every update scenario (and the demo's test) shares: built and published once. */
export const SCENARIO_FLEET_DIR = join(process.env.EDGE_OUT ?? join(ROOT, 'out'), 'qemu-fleet');

/** The Pi 4's board name (the agent reads it from the device tree); raspi4b runs its card. */
export const RPI4_BOARD = 'rpi4';

/** Bytes that do not compress or diff away, the same at every run. */
function incompressible(bytes: number): Buffer {
  const blocks: Buffer[] = [];
  for (let i = 0; i * 32 < bytes; i++)
    blocks.push(createHash('sha256').update(`blob ${i}`).digest());
  return Buffer.concat(blocks).subarray(0, bytes);
}

/**
 * Every release of the scenario fleet, in publishing order; each scenario prepares them all,
 * so the repository is the same whichever scenario runs first.
 */
export const RELEASES = {
  /** v1 and v2: the demo's releases, and the Pi 4 card's update under raspi4b. */
  v1: { version: '1.0.0', deltaFrom: [], boards: [FLEET_BOARD, RPI4_BOARD] },
  v2: { version: '1.1.0', deltaFrom: ['1.0.0'], boards: [FLEET_BOARD, RPI4_BOARD] },
  /** v3 replaces the edge server by one that exits at once: its slot boots, never healthy. */
  unhealthy: {
    version: '1.2.0',
    deltaFrom: ['1.1.0'],
    derived: {
      from: '1.1.0',
      edits: ['rm /usr/lib/edge/edge-server.mjs', 'write crash.mjs /usr/lib/edge/edge-server.mjs'],
      files: { 'crash.mjs': "console.error('this release is broken'); process.exit(3);\n" },
    },
  },
  /** v3′ has an initramfs with no /init: its kernel panics, and panic=5 reboots. */
  panics: {
    version: '1.2.1',
    deltaFrom: ['1.1.0'],
    derived: {
      from: '1.1.0',
      edits: ['rm /boot/initrd.img', 'write empty.cpio /boot/initrd.img'],
      files: { 'empty.cpio': Buffer.alloc(512) },
    },
  },
  /** v2 plus 12 MiB of new data: a delta long enough to cut a download in the middle. */
  bigDelta: {
    version: '1.3.0',
    deltaFrom: ['1.1.0'],
    derived: {
      from: '1.1.0',
      edits: ['write blob.bin /usr/share/edge-blob.bin'],
      files: { 'blob.bin': incompressible(12 << 20) },
    },
  },
} satisfies Record<string, ReleaseSpec>;

export function prepareScenarioFleet(t: ExecutionContext): {
  fleet: Fleet;
  releases: Record<keyof typeof RELEASES, Release>;
} {
  const fleet = new Fleet(SCENARIO_FLEET_DIR, (line) => t.log(line));
  const byVersion = fleet.prepare(Object.values(RELEASES));
  const releases = Object.fromEntries(
    Object.entries(RELEASES).map(([name, spec]) => [name, byVersion[spec.version]!]),
  ) as Record<keyof typeof RELEASES, Release>;
  return { fleet, releases };
}
