import type { FastifyPluginAsync } from 'fastify';
import type { LiveEvents } from './live-events.js';
import { SECURITY_HEADERS } from './security-headers.js';

/** A comment line this often keeps proxies and the server's idle timeout from closing it. */
const PING_MS = 25_000;

/**
 * GET /dashboard/api/events: server-sent events. The overview at once, then `overview` and
 * `rollout` events as the fleet changes (LiveEvents), and a ping comment every 25 s.
 */
export function eventsRoute(live: LiveEvents): FastifyPluginAsync {
  return async (app) => {
    app.get('/api/events', async (_request, reply) => {
      const first = await live.overview();
      reply.hijack();
      const stream = reply.raw;
      stream.writeHead(200, {
        ...SECURITY_HEADERS,
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-store',
        // nginx and the like must pass each event on at once.
        'x-accel-buffering': 'no',
      });
      const write = (text: string) => {
        if (!stream.writableEnded) stream.write(text);
      };
      const send = (event: string, data: unknown) =>
        write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
      send('overview', first);
      const ping = setInterval(() => write(': ping\n\n'), PING_MS);
      const unsubscribe = live.subscribe({
        send,
        close: () => {
          clearInterval(ping);
          stream.end();
        },
      });
      // The response closes when the browser goes away or close() ended it.
      stream.once('close', () => {
        clearInterval(ping);
        unsubscribe();
      });
    });
  };
}
