import cookie from '@fastify/cookie';
import type { FastifyPluginAsync } from 'fastify';
import { authRoutes } from './auth-routes.js';
import { eventsRoute } from './events-route.js';
import { LiveEvents } from './live-events.js';
import { LoginThrottle } from './login-throttle.js';
import { pageRoutes } from './page-routes.js';
import { readRoutes } from './read-routes.js';
import { rolloutRoutes } from './rollout-routes.js';
import { SECURITY_HEADERS } from './security-headers.js';
import { requireSession } from './session-auth.js';
import { Sessions } from './sessions.js';

export interface DashboardOptions {
  /** The built pages (index.html, assets/): ota-server/dist/dashboard. */
  dir: string;
  /** Failed logins per username and per address before a wait. */
  loginLimit?: { failures: number; windowMs: number };
}

/**
 * The fleet dashboard under /dashboard (register with that prefix): its pages, and its API
 * behind an operator's login session. Its cookie opens nothing outside /dashboard, and
 * nothing but its cookie opens its API.
 */
export const dashboardPlugin: FastifyPluginAsync<DashboardOptions> = async (app, options) => {
  const sessions = new Sessions(app.fleet, app.clock);
  const throttle = new LoginThrottle({
    limit: options.loginLimit?.failures ?? 5,
    windowMs: options.loginLimit?.windowMs ?? 15 * 60 * 1000,
  });
  const live = new LiveEvents({
    store: app.fleet,
    events: app.fleetEvents,
    clock: app.clock,
    log: app.log,
  });
  live.start();
  // Open event streams would hold fastify's close: end them first.
  app.addHook('preClose', async () => live.stop());

  await app.register(cookie);
  app.decorateRequest('operatorSession', null);
  app.addHook('onSend', async (request, reply, payload) => {
    void reply.headers(SECURITY_HEADERS);
    if (request.url.startsWith('/dashboard/api/')) void reply.header('cache-control', 'no-store');
    return payload;
  });
  app.setNotFoundHandler((request, reply) =>
    reply.status(404).send({
      statusCode: 404,
      code: 'NOT_FOUND',
      message: `no route ${request.method} ${request.url.split('?', 1)[0]}`,
    }),
  );

  await app.register(authRoutes({ sessions, throttle }));
  await app.register(async (api) => {
    requireSession(api, sessions);
    await api.register(readRoutes);
    await api.register(rolloutRoutes);
    await api.register(eventsRoute(live));
  });
  await app.register(pageRoutes(options.dir));
};
