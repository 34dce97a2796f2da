import { BoardName, ReleaseVersion } from '@edge/formats';
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import type { Rollout } from '../fleet/store.js';
import { ROLLOUT_GUARD_DEFAULTS } from '../fleet/store.js';
import type { RolloutChanged } from './api-json.js';
import { rolloutViewOf } from './views.js';

const Percent = Type.Integer({ minimum: 0, maximum: 100 });
const ThresholdPercent = Type.Integer({ minimum: 1, maximum: 100 });
const MinDevices = Type.Integer({ minimum: 1, maximum: 1_000_000 });
const CreateRollout = Type.Object(
  {
    board: BoardName,
    version: ReleaseVersion,
    percent: Percent,
    failureThresholdPercent: Type.Optional(ThresholdPercent),
    minDevicesForThreshold: Type.Optional(MinDevices),
  },
  { additionalProperties: false },
);
const Widen = Type.Object({ percent: Percent }, { additionalProperties: false });
const Guard = Type.Object(
  {
    failureThresholdPercent: Type.Optional(ThresholdPercent),
    minDevicesForThreshold: Type.Optional(MinDevices),
  },
  { additionalProperties: false },
);
const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });

/**
 * Roll-out changes from the dashboard: the operator API's rules (RolloutService), plus the
 * automatic pause's settings. Every answer is the roll-out as the dashboard shows it.
 */
export const rolloutRoutes: FastifyPluginAsync = async (app) => {
  const answer = async (rollout: Rollout): Promise<RolloutChanged> => ({
    rollout: await rolloutViewOf(app.fleet, rollout),
  });

  app.post<{ Body: Static<typeof CreateRollout> }>(
    '/api/rollouts',
    { schema: { body: CreateRollout } },
    async (request, reply) => {
      const rollout = await app.rolloutService.create({
        ...ROLLOUT_GUARD_DEFAULTS,
        ...request.body,
      });
      request.log.info(
        { username: request.operatorSession?.username },
        'roll-out created on the dashboard',
      );
      return reply.code(201).send(await answer(rollout));
    },
  );

  app.post<{ Params: Static<typeof IdParams>; Body: Static<typeof Widen> }>(
    '/api/rollouts/:id/widen',
    { schema: { params: IdParams, body: Widen } },
    async (request) =>
      answer(
        await app.rolloutService.change(request.params.id, 'widen', {
          percent: request.body.percent,
        }),
      ),
  );

  for (const action of ['pause', 'resume', 'cancel'] as const) {
    app.post<{ Params: Static<typeof IdParams> }>(
      `/api/rollouts/:id/${action}`,
      { schema: { params: IdParams } },
      async (request) => answer(await app.rolloutService.change(request.params.id, action)),
    );
  }

  app.patch<{ Params: Static<typeof IdParams>; Body: Static<typeof Guard> }>(
    '/api/rollouts/:id',
    { schema: { params: IdParams, body: Guard } },
    async (request) => answer(await app.rolloutService.setGuard(request.params.id, request.body)),
  );
};
