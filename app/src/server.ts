import Fastify, { LogController, type FastifyError, type FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import type { BootState } from './boot-state.js';
import type { Config } from './config.js';
import type { FirmwareHashSource } from './firmware-hash.js';
import { Readiness } from './readiness.js';
import { firmwareRoutes } from './routes/firmware.js';
import { healthRoutes } from './routes/health.js';
import { metricsRoutes } from './routes/metrics.js';

declare module 'fastify' {
  interface FastifyInstance {
    config: Config;
    readiness: Readiness;
    firmwareHash: FirmwareHashSource;
    bootState: BootState;
    metricsRegistry: Registry;
  }
}

export interface ServerDeps {
  config: Config;
  firmwareHash: FirmwareHashSource;
  bootState: BootState;
}

/** The edge server: composes the route plugins around shared services. */
export async function buildServer({
  config,
  firmwareHash,
  bootState,
}: ServerDeps): Promise<FastifyInstance> {
  const app = Fastify({
    logger: { level: config.log.level },
    logController: new LogController({ disableRequestLogging: !config.log.requests }),
    http2: false,
    requestTimeout: config.server.requestTimeoutMs,
    keepAliveTimeout: config.server.keepAliveTimeoutMs,
    connectionTimeout: config.server.requestTimeoutMs,
    bodyLimit: config.server.bodyLimitBytes,
    return503OnClosing: true,
  });
  // Node checks headersTimeout against requestTimeout; fastify sets only the latter.
  app.server.headersTimeout = Math.min(
    config.server.headersTimeoutMs,
    config.server.requestTimeoutMs,
  );

  const readiness = new Readiness();
  readiness.require('routes');
  app.decorate('config', config);
  app.decorate('readiness', readiness);
  app.decorate('firmwareHash', firmwareHash);
  app.decorate('bootState', bootState);

  app.setErrorHandler((error: FastifyError, request, reply) => {
    const status = error.statusCode ?? 500;
    if (status >= 500) request.log.error({ err: error }, error.message);
    if (status === 503) void reply.header('retry-after', '2');
    void reply.status(status).send({
      statusCode: status,
      code: error.code ?? 'INTERNAL',
      message: status === 500 && !error.code ? 'internal error' : error.message,
    });
  });

  await app.register(metricsRoutes);
  await app.register(healthRoutes);
  await app.register(firmwareRoutes);
  app.addHook('onReady', async () => readiness.satisfy('routes'));
  return app;
}
