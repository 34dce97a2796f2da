import Fastify from 'fastify';

/** A fastify server in the bench's own process: load on the event loop the main-thread timers share. */
export async function buildLoadedLoop(): Promise<{ url: string; close: () => Promise<void> }> {
  const app = Fastify();
  app.get('/work', async () => ({
    items: Array.from({ length: 50 }, (_, i) => ({ i, s: `item ${i}` })),
  }));
  const address = await app.listen({ host: '127.0.0.1', port: 0 });
  return { url: `${address}/work`, close: () => app.close() };
}
