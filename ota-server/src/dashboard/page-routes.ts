import { createHash } from 'node:crypto';
import { readFile, realpath } from 'node:fs/promises';
import { extname, join } from 'node:path';
import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import { resolveInside } from '../http/send-file.js';
import { ApiError } from '../server/errors.js';

const CONTENT_TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.html': 'text/html; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
};

function notBuilt(dir: string): ApiError {
  return new ApiError(
    503,
    'DASHBOARD_NOT_BUILT',
    `the dashboard is not built (${dir} is missing): run npm run build -w ota-server`,
  );
}

async function send(
  reply: FastifyReply,
  path: string,
  cacheControl: string,
  ifNoneMatch: string | undefined,
): Promise<FastifyReply> {
  const bytes = await readFile(path);
  const etag = `"${createHash('sha256').update(bytes).digest('base64url').slice(0, 27)}"`;
  void reply
    .header('etag', etag)
    .header('cache-control', cacheControl)
    .header('content-type', CONTENT_TYPES[extname(path)] ?? 'application/octet-stream');
  if (ifNoneMatch === etag) return reply.code(304).send();
  return reply.send(bytes);
}

/**
 * The dashboard's files, as `npm run build -w ota-server` writes them: `assets/*` as they
 * are, and `index.html` for every other page path (the page routes on the client).
 */
export function pageRoutes(dir: string): FastifyPluginAsync {
  return async (app) => {
    app.get<{ Params: { '*': string }; Querystring: { v?: string } }>(
      '/assets/*',
      async (request, reply) => {
        const assets = await realpath(join(dir, 'assets')).catch(() => undefined);
        if (assets === undefined) throw notBuilt(dir);
        const path = await resolveInside(assets, request.params['*']);
        if (path === undefined) throw new ApiError(404, 'NOT_FOUND', 'no such dashboard file');
        // The page names its assets with their content hash in ?v=: those never change.
        const cacheControl =
          request.query.v !== undefined ? 'public, max-age=31536000, immutable' : 'no-cache';
        return send(reply, path, cacheControl, request.headers['if-none-match']);
      },
    );

    const page = async (
      request: { headers: { 'if-none-match'?: string } },
      reply: FastifyReply,
    ) => {
      const path = join(dir, 'index.html');
      try {
        return await send(reply, path, 'no-cache', request.headers['if-none-match']);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw notBuilt(dir);
        throw error;
      }
    };
    app.get('/', page);
    app.get<{ Params: { '*': string } }>('/*', async (request, reply) => {
      // An unknown API path is an API 404, not the page.
      if (request.params['*'].startsWith('api/')) {
        throw new ApiError(404, 'NOT_FOUND', `no route GET ${request.url.split('?', 1)[0]}`);
      }
      return page(request, reply);
    });
  };
}
