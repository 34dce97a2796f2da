import type { FastifyInstance } from 'fastify';
import type { SessionRecord } from '../fleet/store.js';
import { errors } from '../server/errors.js';
import { SESSION_COOKIE, sameSecret, type Sessions } from './sessions.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The operator's dashboard session (routes behind requireSession only). */
    operatorSession: SessionRecord | null;
  }
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * Guards a plugin's routes with the session cookie, and every change with the session's CSRF
 * token in X-CSRF-Token (a page of another site can send the cookie, never the token).
 * Nothing else opens them: no bearer token, device or operator.
 */
export function requireSession(app: FastifyInstance, sessions: Sessions): void {
  app.addHook('onRequest', async (request) => {
    const session = await sessions.find(request.cookies[SESSION_COOKIE]);
    if (!session) throw errors.noSession();
    if (!SAFE_METHODS.has(request.method)) {
      const sent = request.headers['x-csrf-token'];
      if (typeof sent !== 'string' || !sameSecret(sent, session.csrfToken)) throw errors.csrf();
    }
    request.operatorSession = session;
  });
}
