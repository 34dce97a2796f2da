import { randomUUID } from 'node:crypto';
import { BoardName, ReleaseVersion } from '@edge/formats';
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import {
  applyRolloutAction,
  rolloutStateFor,
  type RolloutAction,
} from '../../fleet/rollout-policy.js';
import type { Rollout } from '../../fleet/store.js';
import { publishedImages } from '../../repository/published-images.js';
import { imageTargetName } from '../../tuf/index.js';
import { errors } from '../errors.js';
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
      const { board, version, percent } = request.body;
      const target = imageTargetName(board, version);
      const images = await publishedImages(app.serverConfig.repoDir, board);
      if (!images.some((image) => image.version === version)) {
        throw errors.releaseNotPublished(target);
      }
      const now = app.clock();
      const rollout: Rollout = {
        id: randomUUID(),
        board,
        version,
        percent,
        state: rolloutStateFor(percent),
        createdAt: now,
        updatedAt: now,
      };
      await app.fleet.createRollout(rollout);
      app.rollouts.invalidate();
      request.log.info({ rollout: rolloutJson(rollout) }, 'roll-out created');
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
    async (request) => {
      const rollout = await app.fleet.rollout(request.params.id);
      if (!rollout) throw errors.rolloutNotFound(request.params.id);
      return rolloutJson(rollout);
    },
  );

  const change = async (id: string, action: RolloutAction, percent?: number) => {
    const rollout = await app.fleet.rollout(id);
    if (!rollout) throw errors.rolloutNotFound(id);
    if (action === 'widen' && percent !== undefined && percent < rollout.percent) {
      throw errors.rolloutNarrowing(rollout.percent, percent);
    }
    const next = applyRolloutAction(rollout, action, percent);
    if (!next.ok) throw errors.rolloutState(next.reason);
    const updated = {
      ...rollout,
      state: next.state,
      percent: next.percent,
      updatedAt: app.clock(),
    };
    if (!(await app.fleet.updateRollout(id, rollout, updated))) {
      throw errors.rolloutState('the roll-out changed meanwhile: read it again');
    }
    app.rollouts.invalidate();
    app.log.info({ rollout: rolloutJson(updated), action }, 'roll-out changed');
    return rolloutJson(updated);
  };

  app.post<{ Params: Static<typeof RolloutParams>; Body: Static<typeof WidenRollout> }>(
    '/api/v1/rollouts/:id/widen',
    { schema: { params: RolloutParams, body: WidenRollout, response: { 200: RolloutJson } } },
    async (request) => change(request.params.id, 'widen', request.body.percent),
  );
  for (const action of ['pause', 'resume', 'cancel'] as const) {
    app.post<{ Params: Static<typeof RolloutParams> }>(
      `/api/v1/rollouts/:id/${action}`,
      { schema: { params: RolloutParams, response: { 200: RolloutJson } } },
      async (request) => change(request.params.id, action),
    );
  }
};
