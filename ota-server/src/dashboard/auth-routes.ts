import { Type, type Static } from '@sinclair/typebox';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { errors } from '../server/errors.js';
import type { LoginThrottle } from './login-throttle.js';
import { dummyPasswordHash, verifyPassword } from './password-hash.js';
import { requireSession } from './session-auth.js';
import { SESSION_COOKIE, type Sessions } from './sessions.js';

const Login = Type.Object(
  {
    username: Type.String({ minLength: 1, maxLength: 64 }),
    password: Type.String({ minLength: 1, maxLength: 1024 }),
  },
  { additionalProperties: false },
);
const SessionJson = Type.Object({ username: Type.String(), csrfToken: Type.String() });

/** The cookie: only for /dashboard, never readable by scripts, never sent by other sites. */
function cookieOptions(request: FastifyRequest) {
  return {
    path: '/dashboard',
    httpOnly: true,
    sameSite: 'strict' as const,
    secure: request.protocol === 'https',
  };
}

/** Same origin as this server: a login form of another site must not log anyone in here. */
function foreignOrigin(request: FastifyRequest): string | undefined {
  const origin = request.headers.origin;
  if (origin === undefined) return undefined;
  return origin === `${request.protocol}://${request.host}` ? undefined : origin;
}

/** Log in, the session's state, log out. */
export function authRoutes(deps: {
  sessions: Sessions;
  throttle: LoginThrottle;
}): FastifyPluginAsync {
  const { sessions, throttle } = deps;
  return async (app) => {
    app.post<{ Body: Static<typeof Login> }>(
      '/api/login',
      { schema: { body: Login, response: { 200: SessionJson } } },
      async (request, reply) => {
        const origin = foreignOrigin(request);
        if (origin !== undefined) throw errors.foreignOrigin(origin);
        const { username, password } = request.body;
        const keys = [`user:${username.toLowerCase()}`, `address:${request.ip}`];
        const wait = throttle.retryAfterSeconds(keys);
        if (wait > 0) throw errors.tooManyLogins(wait);
        const operator = await app.fleet.operator(username);
        // Unknown names cost a hash too: the answer's time does not tell which names exist.
        const matches = await verifyPassword(
          password,
          operator?.passwordHash ?? (await dummyPasswordHash()),
        );
        if (!operator || !matches) {
          throttle.failed(keys);
          request.log.warn({ username, ip: request.ip }, 'dashboard login refused');
          throw errors.loginFailed();
        }
        throttle.succeeded(keys[0]!);
        const { token, session } = await sessions.create(operator.username);
        request.log.info({ username: operator.username }, 'dashboard login');
        void reply.setCookie(SESSION_COOKIE, token, cookieOptions(request));
        return { username: session.username, csrfToken: session.csrfToken };
      },
    );

    await app.register(async (guarded) => {
      requireSession(guarded, sessions);

      guarded.get('/api/session', { schema: { response: { 200: SessionJson } } }, (request) => ({
        username: request.operatorSession!.username,
        csrfToken: request.operatorSession!.csrfToken,
      }));

      guarded.post('/api/logout', async (request, reply) => {
        await sessions.end(request.cookies[SESSION_COOKIE]);
        void reply.clearCookie(SESSION_COOKIE, cookieOptions(request));
        return reply.code(204).send();
      });
    });
  };
}
