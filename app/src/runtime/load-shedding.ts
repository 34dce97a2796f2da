import type { FastifyPluginAsync } from 'fastify';
import fastifyPlugin from 'fastify-plugin';
import { Counter, type Registry } from 'prom-client';
import type { MemoryPressure } from './memory-pressure.js';

/** Routes that answer whatever memory is left: liveness, readiness, metrics, and what the fleet polls. */
export const ESSENTIAL_ROUTES: readonly string[] = [
  '/healthz',
  '/readyz',
  '/metrics',
  '/api/v1/firmware/hash',
  '/api/v1/ota/status',
];

export interface LoadSheddingOptions {
  pressure: MemoryPressure;
  retryAfterSeconds: number;
  registry: Registry;
  essentialRoutes?: readonly string[];
}

/** Under memory pressure, every route but the essential ones answers 503 with Retry-After. */
const loadSheddingPlugin: FastifyPluginAsync<LoadSheddingOptions> = async (app, options) => {
  const essential = new Set(options.essentialRoutes ?? ESSENTIAL_ROUTES);
  const shed = new Counter({
    name: 'edge_requests_shed_total',
    help: 'Requests answered 503 because memory was short, by route',
    labelNames: ['route'] as const,
    registers: [options.registry],
  });
  const retryAfter = String(options.retryAfterSeconds);

  app.addHook('onRequest', async (request, reply) => {
    if (!options.pressure.isHigh()) return;
    const route = request.routeOptions.url ?? 'unmatched';
    if (essential.has(route)) return;
    shed.inc({ route });
    // Answered here, not thrown: the error handler would put its own Retry-After.
    return reply.code(503).header('retry-after', retryAfter).send({
      statusCode: 503,
      code: 'MEMORY_PRESSURE',
      message: 'memory is short: only essential routes answer; retry later',
    });
  });
};

export const loadShedding = fastifyPlugin(loadSheddingPlugin, { name: 'load-shedding' });
