import { NOT_SEEN_AFTER_MS } from '../fleet/device-category.js';
import { parseSemver, compareSemver } from '../publish/semver.js';
import type {
  CheckInRecord,
  DeviceCategory,
  DeviceListRow,
  FleetStore,
  Rollout,
  RolloutCounts,
  RolloutSample,
} from '../fleet/store.js';
import type {
  CheckInJson,
  DeviceRow,
  Overview,
  RolloutSampleJson,
  RolloutView,
} from './api-json.js';

/** The dashboard's JSON (api-json.ts), made from the store's records. */

export function rolloutView(rollout: Rollout, counts: RolloutCounts): RolloutView {
  return {
    id: rollout.id,
    board: rollout.board,
    version: rollout.version,
    percent: rollout.percent,
    state: rollout.state,
    createdAt: rollout.createdAt.toISOString(),
    updatedAt: rollout.updatedAt.toISOString(),
    failureThresholdPercent: rollout.failureThresholdPercent,
    minDevicesForThreshold: rollout.minDevicesForThreshold,
    pausedReason: rollout.pausedReason,
    counts,
  };
}

export async function rolloutViewOf(store: FleetStore, rollout: Rollout): Promise<RolloutView> {
  return rolloutView(rollout, await store.rolloutCounts(rollout));
}

export function rolloutSampleJson(sample: RolloutSample): RolloutSampleJson {
  return { ...sample, at: sample.at.toISOString() };
}

export function deviceRowJson(row: DeviceListRow): DeviceRow {
  return { ...row, lastSeen: row.lastSeen?.toISOString() ?? null };
}

export function checkInJson(checkIn: CheckInRecord): CheckInJson {
  return {
    at: checkIn.at.toISOString(),
    version: checkIn.version,
    slot: checkIn.slot,
    updateState: checkIn.update.state,
    targetVersion: checkIn.update.targetVersion ?? null,
    progress: checkIn.update.progress ?? null,
    reason: checkIn.update.reason ?? null,
    desiredVersion: checkIn.desiredVersion,
  };
}

/** Newest version first; versions that are not semver after the others, by name. */
export function compareVersionsNewestFirst(a: string, b: string): number {
  const x = parseSemver(a);
  const y = parseSemver(b);
  if (x && y) return compareSemver(y, x);
  if (x || y) return x ? -1 : 1;
  return a < b ? 1 : a > b ? -1 : 0;
}

/** The fleet at a glance: one grouped query, then the active and paused roll-outs' counts. */
export async function fleetOverview(store: FleetStore, now: Date): Promise<Overview> {
  const [groups, rollouts] = await Promise.all([
    store.fleetGroups(new Date(now.getTime() - NOT_SEEN_AFTER_MS)),
    store.listRollouts(),
  ]);
  const byState: Record<DeviceCategory, number> = {
    upToDate: 0,
    updating: 0,
    failed: 0,
    rolledBack: 0,
    notSeen: 0,
  };
  const boards = new Map<string, number>();
  const versions = new Map<string, { board: string; version: string; count: number }>();
  let total = 0;
  for (const group of groups) {
    total += group.count;
    byState[group.category] += group.count;
    boards.set(group.board, (boards.get(group.board) ?? 0) + group.count);
    // Devices that never checked in have no version: they count under notSeen only.
    if (group.version === null) continue;
    const key = `${group.board}\n${group.version}`;
    const entry = versions.get(key) ?? { board: group.board, version: group.version, count: 0 };
    entry.count += group.count;
    versions.set(key, entry);
  }
  const shown = rollouts.filter(
    (rollout) => rollout.state === 'active' || rollout.state === 'paused',
  );
  return {
    generatedAt: now.toISOString(),
    total,
    byBoard: [...boards]
      .map(([board, count]) => ({ board, count }))
      .sort((a, b) => (a.board < b.board ? -1 : 1)),
    byVersion: [...versions.values()].sort((a, b) =>
      a.board === b.board
        ? compareVersionsNewestFirst(a.version, b.version)
        : a.board < b.board
          ? -1
          : 1,
    ),
    byState,
    rollouts: await Promise.all(shown.map((rollout) => rolloutViewOf(store, rollout))),
  };
}
