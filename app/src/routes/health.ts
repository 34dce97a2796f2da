import type { FastifyPluginAsync } from 'fastify';
import { NotReady } from '../errors.js';

const StatusResponse = {
  type: 'object',
  properties: { status: { type: 'string' } },
  required: ['status'],
} as const;

/** Liveness (the process answers) and readiness (config loaded, routes up, and whatever else is required). */
export const healthRoutes: FastifyPluginAsync = async (app) => {
  app.get('/healthz', { schema: { response: { 200: StatusResponse } } }, () => ({ status: 'ok' }));

  app.get('/readyz', { schema: { response: { 200: StatusResponse } } }, () => {
    if (!app.readiness.ready) throw new NotReady(app.readiness.waitingFor.join(', '));
    return { status: 'ready' };
  });
};
