import { BoardName, ReleaseVersion } from '@edge/formats';
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import type { Rollout } from '../../fleet/store.js';
import { imageTargetName } from '../../tuf/index.js';
import { requireOperator } from '../operator-auth.js';

const Percent = Type.Integer({ minimum: 0, maximum: 100 });
const CreateRollout = Type.Object(
  { board: BoardName, version: ReleaseVersion, percent: Percent },
  { additionalProperties: false },
);
const WidenRollout = Type.Object({ percent: Percent }, { additionalProperties: false });
const RolloutParams = Type.Object({ id: Type.String({ maxLength: 64 }) });
const RolloutQuery = Type.Object({ board: Type.Optional(BoardName) });
export const RolloutJson = Type.Object({
  id: Type.String(),
  board: Type.String(),
  version: Type.String(),
  imageTarget: Type.String(),
  percent: Type.Integer(),
  state: Type.String(),
  createdAt: Type.String(),
  updatedAt: Type.String(),
});
export type RolloutJson = Static<typeof RolloutJson>;

function rolloutJson(rollout: Rollout): RolloutJson {
  return {
    id: rollout.id,
    board: rollout.board,
    version: rollout.version,
    imageTarget: imageTargetName(rollout.board, rollout.version),
    percent: rollout.percent,
    state: rollout.state,
    createdAt: rollout.createdAt.toISOString(),
    updatedAt: rollout.updatedAt.toISOString(),
  };
}

/** Staged roll-outs: a published release to a share of a board's devices, widened by command. */
export const rolloutRoutes: FastifyPluginAsync = async (app) => {
  requireOperator(app);

  app.post<{ Body: Static<typeof CreateRollout> }>(
    '/api/v1/rollouts',
    { schema: { body: CreateRollout, response: { 201: RolloutJson } } },
    async (request, reply) => {
      const rollout = await app.rolloutService.create(request.body);
      return reply.code(201).send(rolloutJson(rollout));
    },
  );

  app.get<{ Querystring: Static<typeof RolloutQuery> }>(
    '/api/v1/rollouts',
    {
      schema: {
        querystring: RolloutQuery,
        response: { 200: Type.Object({ rollouts: Type.Array(RolloutJson) }) },
      },
    },
    async (request) => ({
      rollouts: (await app.fleet.listRollouts(request.query.board)).map(rolloutJson),
    }),
  );

  app.get<{ Params: Static<typeof RolloutParams> }>(
    '/api/v1/rollouts/:id',
    { schema: { params: RolloutParams, response: { 200: RolloutJson } } },
    async (request) => rolloutJson(await app.rolloutService.get(request.params.id)),
  );

  app.post<{ Params: Static<typeof RolloutParams>; Body: Static<typeof WidenRollout> }>(
    '/api/v1/rollouts/:id/widen',
    { schema: { params: RolloutParams, body: WidenRollout, response: { 200: RolloutJson } } },
    async (request) =>
      rolloutJson(
        await app.rolloutService.change(request.params.id, 'widen', {
          percent: request.body.percent,
        }),
      ),
  );
  for (const action of ['pause', 'resume', 'cancel'] as const) {
    app.post<{ Params: Static<typeof RolloutParams> }>(
      `/api/v1/rollouts/:id/${action}`,
      { schema: { params: RolloutParams, response: { 200: RolloutJson } } },
      async (request) => rolloutJson(await app.rolloutService.change(request.params.id, action)),
    );
  }
};
