import { DEVICE_API_PATHS, EnrollRequest, EnrollResponse } from '@edge/formats';
import type { FastifyPluginAsync } from 'fastify';
import { errors } from '../errors.js';

/** Enrolment: a fleet token admits a device and the Ed25519 key that signs its requests. */
export const enrollRoutes: FastifyPluginAsync = async (app) => {
  app.post<{ Body: EnrollRequest }>(
    DEVICE_API_PATHS.enroll,
    { schema: { body: EnrollRequest, response: { 200: EnrollResponse, 201: EnrollResponse } } },
    async (request, reply) => {
      const { fleetToken, deviceId, board, publicKey } = request.body;
      if (!app.serverConfig.fleetTokens.accepts(fleetToken)) throw errors.fleetTokenInvalid();
      const outcome = await app.fleet.enrollDevice(
        { deviceId, board, publicKeyX: publicKey.x },
        app.clock(),
      );
      if (outcome === 'conflict') throw errors.deviceKeyConflict(deviceId);
      if (outcome === 'created') request.log.info({ deviceId, board }, 'device enrolled');
      return reply.code(outcome === 'created' ? 201 : 200).send({ deviceId });
    },
  );
};
