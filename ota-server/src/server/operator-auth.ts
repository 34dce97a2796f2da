import type { FastifyInstance } from 'fastify';
import { errors } from './errors.js';
import { bearerToken } from './token-set.js';

/** Guards a plugin's routes with the operator token (the dashboard adds logins later). */
export function requireOperator(app: FastifyInstance): void {
  app.addHook('onRequest', async (request) => {
    if (!app.serverConfig.operatorTokens.accepts(bearerToken(request.headers.authorization))) {
      throw errors.operatorTokenInvalid();
    }
  });
}
