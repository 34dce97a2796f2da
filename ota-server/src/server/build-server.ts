import Fastify, { LogController, type FastifyError, type FastifyInstance } from 'fastify';
import { dashboardPlugin } from '../dashboard/dashboard-plugin.js';
import { FleetEvents } from '../fleet/fleet-events.js';
import { RolloutCache } from '../fleet/rollout-cache.js';
import type { DeviceKeyRecord, FleetStore } from '../fleet/store.js';
import { NewestApps } from '../repository/newest-apps.js';
import type { ServerConfig } from './config.js';
import { DeviceAuthenticator } from './device-auth.js';
import { ApiError } from './errors.js';
import { RolloutMonitor } from './rollout-monitor.js';
import { RolloutService } from './rollout-service.js';
import { deviceRoutes } from './routes/device.js';
import { devicesRoutes } from './routes/devices.js';
import { enrollRoutes } from './routes/enroll.js';
import { healthRoutes } from './routes/health.js';
import { rolloutRoutes } from './routes/rollouts.js';
import { tufFileRoutes } from './routes/tuf-files.js';

declare module 'fastify' {
  interface FastifyInstance {
    serverConfig: ServerConfig;
    fleet: FleetStore;
    deviceAuth: DeviceAuthenticator;
    rollouts: RolloutCache;
    /** Every roll-out change goes through it (operator API, dashboard, automatic pause). */
    rolloutService: RolloutService;
    /** Samples active roll-outs and pauses those failing past their threshold. */
    rolloutMonitor: RolloutMonitor;
    /** Check-ins and roll-out changes, for the dashboard's live view and the monitor. */
    fleetEvents: FleetEvents;
    /** Each board's newest app release, for the check-in answer. */
    newestApps: NewestApps;
    clock: () => Date;
  }
  interface FastifyRequest {
    /** The device that signed the request (signed device API only). */
    device: DeviceKeyRecord | null;
    /** The body as received, for its signed hash (signed device API only). */
    rawBody: Buffer | undefined;
  }
}

export interface ServerDeps {
  config: ServerConfig;
  store: FleetStore;
  /** The clock (tests move it). */
  clock?: () => Date;
}

/** How often old check-ins, uplinks and token ids are dropped. */
const PRUNE_INTERVAL_MS = 10 * 60 * 1000;

/** The update server: composes the route plugins around the fleet store and the repository. */
export async function buildServer({
  config,
  store,
  clock = () => new Date(),
}: ServerDeps): Promise<FastifyInstance> {
  const app = Fastify({
    logger: { level: config.logLevel },
    logController: new LogController({ disableRequestLogging: !config.logRequests }),
    requestTimeout: config.requestTimeoutMs,
    connectionTimeout: config.idleTimeoutMs,
    keepAliveTimeout: config.keepAliveTimeoutMs,
    bodyLimit: config.bodyLimitBytes,
    return503OnClosing: true,
    trustProxy: config.trustProxy,
  });
  // Node checks headersTimeout against requestTimeout; fastify sets only the latter.
  app.server.headersTimeout = Math.min(10_000, config.requestTimeoutMs);

  app.decorate('serverConfig', config);
  app.decorate('fleet', store);
  app.decorate('clock', clock);
  app.decorate('deviceAuth', new DeviceAuthenticator(store, clock));
  const rolloutCache = new RolloutCache(store);
  const fleetEvents = new FleetEvents();
  const rolloutService = new RolloutService({
    store,
    cache: rolloutCache,
    events: fleetEvents,
    repoDir: config.repoDir,
    clock,
    log: app.log,
  });
  const rolloutMonitor = new RolloutMonitor({
    store,
    events: fleetEvents,
    cache: rolloutCache,
    service: rolloutService,
    log: app.log,
    clock,
    sampleSeconds: config.rolloutSampleSeconds,
  });
  app.decorate('rollouts', rolloutCache);
  app.decorate('fleetEvents', fleetEvents);
  app.decorate('rolloutService', rolloutService);
  app.decorate('rolloutMonitor', rolloutMonitor);
  app.decorate('newestApps', new NewestApps(config.repoDir));
  app.decorateRequest('device', null);
  app.decorateRequest('rawBody', undefined);

  app.setErrorHandler((error: FastifyError | ApiError, request, reply) => {
    if (error instanceof ApiError) {
      if (error.statusCode === 401) request.log.info({ code: error.code }, error.message);
      void reply.headers(error.headers);
      return reply.status(error.statusCode).send({
        statusCode: error.statusCode,
        code: error.code,
        message: error.message,
      });
    }
    if (error.validation) {
      return reply
        .status(400)
        .send({ statusCode: 400, code: 'BAD_REQUEST', message: error.message });
    }
    const status = error.statusCode ?? 500;
    if (status >= 500) request.log.error({ err: error }, error.message);
    return reply.status(status).send({
      statusCode: status,
      code: status >= 500 ? 'INTERNAL' : (error.code ?? 'BAD_REQUEST'),
      message: status >= 500 ? 'internal error' : error.message,
    });
  });
  app.setNotFoundHandler((request, reply) =>
    reply.status(404).send({
      statusCode: 404,
      code: 'NOT_FOUND',
      message: `no route ${request.method} ${request.url.split('?', 1)[0]}`,
    }),
  );

  const retention = config.retention;
  const prune = () =>
    store
      .prune(retention, clock())
      .catch((error: unknown) => app.log.warn({ err: error }, 'pruning fleet history failed'));
  const pruneTimer = setInterval(() => void prune(), PRUNE_INTERVAL_MS).unref();
  app.addHook('onClose', async () => clearInterval(pruneTimer));
  rolloutMonitor.start();
  // Before the store closes (serve closes it in a later onClose hook).
  app.addHook('preClose', async () => rolloutMonitor.stop());

  await app.register(healthRoutes);
  await app.register(enrollRoutes);
  await app.register(deviceRoutes);
  await app.register(devicesRoutes);
  await app.register(rolloutRoutes);
  await app.register(tufFileRoutes);
  await app.register(dashboardPlugin, { prefix: '/dashboard', dir: config.dashboardDir });
  return app;
}
