import type { FastifyPluginAsync } from 'fastify';

/** Liveness, and readiness with a round trip to the fleet store. */
export const healthRoutes: FastifyPluginAsync = async (app) => {
  app.get('/healthz', async () => ({ ok: true }));
  app.get('/readyz', async () => {
    await app.fleet.deviceKey('');
    return { ok: true, store: app.fleet.kind };
  });
};
