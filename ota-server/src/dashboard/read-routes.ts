import { BoardName, ReleaseVersion } from '@edge/formats';
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import { deviceCategory, NOT_SEEN_AFTER_MS } from '../fleet/device-category.js';
import { DEVICE_CATEGORIES, type CheckInRecord, type DeviceSortKey } from '../fleet/store.js';
import { publishedReleases } from '../repository/published-releases.js';
import { errors } from '../server/errors.js';
import type {
  DevicePage,
  DeviceDetailJson,
  Releases,
  RolloutDetail,
  RolloutList,
  TimelineEntry,
} from './api-json.js';
import {
  checkInJson,
  compareVersionsNewestFirst,
  deviceRowJson,
  fleetOverview,
  rolloutSampleJson,
  rolloutViewOf,
} from './views.js';

const SORT_KEYS: DeviceSortKey[] = ['deviceId', 'board', 'version', 'lastSeen', 'state'];
const literals = <T extends string>(values: readonly T[]) =>
  Type.Union(values.map((value) => Type.Literal(value)));

const DeviceQuery = Type.Object({
  q: Type.Optional(Type.String({ maxLength: 128 })),
  board: Type.Optional(BoardName),
  version: Type.Optional(ReleaseVersion),
  category: Type.Optional(literals(DEVICE_CATEGORIES)),
  sort: literals(SORT_KEYS),
  order: literals(['asc', 'desc'] as const),
  page: Type.Integer({ minimum: 1, maximum: 1_000_000, default: 1 }),
  pageSize: Type.Integer({ minimum: 10, maximum: 200, default: 50 }),
});
// Defaults outside Type.Union: TypeBox puts them on the schema, ajv fills them in.
DeviceQuery.properties.sort.default = 'deviceId';
DeviceQuery.properties.order.default = 'asc';

const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 128 }) });
/** Check-ins a device page shows; the timeline reads all that are kept. */
const CHECK_INS_SHOWN = 100;
/** Samples a roll-out page charts: 2 days at one per 30 s. */
const SAMPLES_SHOWN = 5760;

/** A device's update timeline: the check-ins where its update state changed, oldest first. */
function timelineOf(newestFirst: readonly CheckInRecord[]): TimelineEntry[] {
  const timeline: TimelineEntry[] = [];
  let previous: string | undefined;
  for (const checkIn of [...newestFirst].reverse()) {
    const key = `${checkIn.update.state}\n${checkIn.update.targetVersion ?? ''}`;
    if (key === previous) continue;
    previous = key;
    timeline.push({
      at: checkIn.at.toISOString(),
      state: checkIn.update.state,
      version: checkIn.version,
      targetVersion: checkIn.update.targetVersion ?? null,
      reason: checkIn.update.reason ?? null,
    });
  }
  return timeline;
}

/** What the dashboard reads: the overview, devices, releases and roll-outs. */
export const readRoutes: FastifyPluginAsync = async (app) => {
  app.get('/api/overview', async () => fleetOverview(app.fleet, app.clock()));

  app.get<{ Querystring: Static<typeof DeviceQuery> }>(
    '/api/devices',
    { schema: { querystring: DeviceQuery } },
    async (request): Promise<DevicePage> => {
      const { q, board, version, category, sort, order, page, pageSize } = request.query;
      const { total, devices } = await app.fleet.devicePage({
        search: q?.trim() || undefined,
        board,
        version,
        category,
        sort,
        order,
        offset: (page - 1) * pageSize,
        limit: pageSize,
        notSeenBefore: new Date(app.clock().getTime() - NOT_SEEN_AFTER_MS),
      });
      return { total, page, pageSize, devices: devices.map(deviceRowJson) };
    },
  );

  app.get<{ Params: Static<typeof IdParams> }>(
    '/api/devices/:id',
    { schema: { params: IdParams } },
    async (request): Promise<DeviceDetailJson> => {
      const id = request.params.id;
      const detail = await app.fleet.device(id, app.serverConfig.retention.checkInsPerDevice);
      if (!detail) throw errors.deviceNotFound(id);
      const last = detail.lastCheckIn;
      const notSeenBefore = new Date(app.clock().getTime() - NOT_SEEN_AFTER_MS);
      const failure =
        detail.checkIns.find((checkIn) =>
          ['failed', 'rolled-back'].includes(checkIn.update.state),
        ) ?? (last && ['failed', 'rolled-back'].includes(last.update.state) ? last : undefined);
      return {
        device: {
          deviceId: detail.deviceId,
          board: detail.board,
          version: last?.version ?? null,
          category: deviceCategory(last?.at ?? null, last?.update.state ?? null, notSeenBefore),
          updateState: last?.update.state ?? null,
          targetVersion: last?.update.targetVersion ?? null,
          lastSeen: last?.at.toISOString() ?? null,
          reason: last?.update.reason ?? null,
          enrolledAt: detail.enrolledAt.toISOString(),
          slot: last?.slot ?? null,
          firmwareHash: last?.firmwareHash ?? null,
          app: last?.app ?? null,
        },
        checkIns: detail.checkIns.slice(0, CHECK_INS_SHOWN).map(checkInJson),
        timeline: timelineOf(detail.checkIns),
        lastFailure: failure
          ? {
              at: failure.at.toISOString(),
              reason: failure.update.reason ?? null,
              targetVersion: failure.update.targetVersion ?? null,
            }
          : null,
      };
    },
  );

  app.get('/api/releases', async (): Promise<Releases> => {
    const releases = await publishedReleases(app.serverConfig.repoDir);
    return {
      boards: [...releases]
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([board, list]) => ({
          board,
          releases: list
            .sort((a, b) => compareVersionsNewestFirst(a.version, b.version))
            .map((release) => ({
              ...release,
              publishedAt: release.publishedAt?.toISOString() ?? null,
              deltas: release.deltas.sort((a, b) =>
                compareVersionsNewestFirst(a.fromVersion, b.fromVersion),
              ),
            })),
        })),
    };
  });

  app.get('/api/rollouts', async (): Promise<RolloutList> => ({
    rollouts: await Promise.all(
      (await app.fleet.listRollouts()).map((rollout) => rolloutViewOf(app.fleet, rollout)),
    ),
  }));

  app.get<{ Params: Static<typeof IdParams> }>(
    '/api/rollouts/:id',
    { schema: { params: IdParams } },
    async (request): Promise<RolloutDetail> => {
      const rollout = await app.rolloutService.get(request.params.id);
      const [view, samples] = await Promise.all([
        rolloutViewOf(app.fleet, rollout),
        app.fleet.rolloutSamples(rollout.id, SAMPLES_SHOWN),
      ]);
      return { rollout: view, samples: samples.map(rolloutSampleJson) };
    },
  );
};
