import Fastify, { LogController, type FastifyError, type FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import type { BootState } from './boot-state.js';
import type { Config } from './config.js';
import type { FirmwareHashSource } from './firmware-hash.js';
import type { TokenBucket } from './ota/token-bucket.js';
import type { UpdateAgent } from './ota/update-agent.js';
import { Readiness } from './readiness.js';
import { firmwareRoutes } from './routes/firmware.js';
import { healthRoutes } from './routes/health.js';
import { metricsRoutes } from './routes/metrics.js';
import { otaRoutes } from './routes/ota.js';
import { modulesRoutes } from './routes/modules.js';
import type { ModuleRegistry } from './sandbox/module-registry.js';
import { runtimePlugin, type RuntimeDeps } from './runtime/runtime-plugin.js';
import { TlsCertificates, transportOptions } from './runtime/tls.js';

declare module 'fastify' {
  interface FastifyInstance {
    config: Config;
    readiness: Readiness;
    firmwareHash: FirmwareHashSource;
    bootState: BootState;
    updateAgent: UpdateAgent | undefined;
    /** The WASM module sandbox; set by main.ts once the server exists (it needs the metrics). */
    modules: ModuleRegistry | undefined;
    downloadBucket: TokenBucket;
    metricsRegistry: Registry;
  }
}

export interface ServerDeps {
  config: Config;
  firmwareHash: FirmwareHashSource;
  bootState: BootState;
  /** The update agent's download limit (the agent itself is set later: it needs readiness). */
  downloadBucket: TokenBucket;
  /** Stand-ins for the kernel's memory figures (tests); the real ones otherwise. */
  runtime?: Omit<RuntimeDeps, 'tls'>;
}

/** The edge server: composes the route plugins around shared services. */
export async function buildServer({
  config,
  firmwareHash,
  bootState,
  downloadBucket,
  runtime,
}: ServerDeps): Promise<FastifyInstance> {
  const tls = config.tls.enabled ? new TlsCertificates(config.tls) : undefined;
  const app = Fastify({
    logger: { level: config.log.level },
    logController: new LogController({ disableRequestLogging: !config.log.requests }),
    ...transportOptions(tls),
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
  app.decorate('downloadBucket', downloadBucket);
  app.decorate('updateAgent', undefined);
  app.decorate('modules', undefined);

  app.setErrorHandler((error: FastifyError, request, reply) => {
    const status = error.statusCode ?? 500;
    // 503s are expected states (hash pending, not ready) with their own codes; 500s are bugs.
    if (status >= 500 && status !== 503) request.log.error({ err: error }, error.message);
    if (status === 503) void reply.header('retry-after', '2');
    void reply.status(status).send({
      statusCode: status,
      code: error.code ?? 'INTERNAL',
      message: status === 500 && !error.code ? 'internal error' : error.message,
    });
  });

  await app.register(metricsRoutes);
  await app.register(runtimePlugin, { ...runtime, tls });
  await app.register(healthRoutes);
  await app.register(firmwareRoutes);
  await app.register(otaRoutes);
  await app.register(modulesRoutes);
  app.addHook('onReady', async () => readiness.satisfy('routes'));
  return app;
}
