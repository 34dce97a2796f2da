import {
  CheckInRequest,
  CheckInResponse,
  DEVICE_API_PATHS,
  UplinkRequest,
  UplinkResponse,
  type DesiredApp,
  type DesiredRelease,
} from '@edge/formats';
import type { FastifyPluginAsync } from 'fastify';
import { desiredRollout } from '../../fleet/rollout-policy.js';
import { imageTargetName } from '../../tuf/index.js';
import { ApiError, errors } from '../errors.js';

/** A JSON parser must not create __proto__ keys: later spreads would set prototypes. */
function withoutProtoKeys(key: string, value: unknown): unknown {
  return key === '__proto__' ? undefined : value;
}

/**
 * The signed device API. The raw body is kept for the token's bodySha256, and the token is
 * checked before the body is validated, so an unsigned request learns nothing of the schema.
 */
export const deviceRoutes: FastifyPluginAsync = async (app) => {
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
    const raw = body as Buffer;
    request.rawBody = raw;
    try {
      done(null, JSON.parse(raw.toString('utf8'), withoutProtoKeys));
    } catch {
      done(new ApiError(400, 'BAD_JSON', 'body is not JSON'), undefined);
    }
  });
  app.addHook('preValidation', async (request) => {
    request.device = await app.deviceAuth.authenticate({
      method: request.method,
      path: request.url.split('?', 1)[0] ?? request.url,
      authorization: request.headers.authorization,
      body: request.rawBody,
    });
  });

  app.post<{ Body: CheckInRequest }>(
    DEVICE_API_PATHS.checkIn,
    { schema: { body: CheckInRequest, response: { 200: CheckInResponse } } },
    async (request) => {
      const device = request.device!;
      const report = request.body;
      if (report.board !== device.board) throw errors.boardMismatch(device.board, report.board);
      const rollout = desiredRollout(await app.rollouts.inForce(device.board), {
        deviceId: device.deviceId,
        version: report.version,
        targetVersion: report.update.targetVersion,
      });
      const desired: DesiredRelease | null = rollout
        ? {
            version: rollout.version,
            board: rollout.board,
            imageTarget: imageTargetName(rollout.board, rollout.version),
          }
        : null;
      // App releases have no staged roll-out yet: every device runs its board's newest.
      const newestApp = await app.newestApps.of(device.board);
      const desiredApp: DesiredApp | null = newestApp
        ? { version: newestApp.version, board: newestApp.board, indexTarget: newestApp.indexTarget }
        : null;
      const checkIn = {
        at: app.clock(),
        slot: report.slot,
        firmwareHash: report.firmwareHash,
        version: report.version,
        update: report.update,
        desiredVersion: desired?.version ?? null,
        ...(report.app && { app: report.app }),
      };
      await app.fleet.recordCheckIn(device.deviceId, checkIn);
      app.fleetEvents.emit('checkIn', {
        deviceId: device.deviceId,
        board: device.board,
        report: checkIn,
      });
      return { desired, app: desiredApp, checkInSeconds: app.serverConfig.checkInSeconds };
    },
  );

  app.post<{ Body: UplinkRequest }>(
    DEVICE_API_PATHS.uplink,
    { schema: { body: UplinkRequest, response: { 202: UplinkResponse } } },
    async (request, reply) => {
      await app.fleet.recordUplink(request.device!.deviceId, {
        at: app.clock(),
        module: request.body.module,
        payload: request.body.payload,
      });
      return reply.code(202).send({ accepted: true });
    },
  );
};
