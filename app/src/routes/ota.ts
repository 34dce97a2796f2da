import type { FastifyPluginAsync } from 'fastify';

const Bandwidth = {
  type: 'object',
  properties: {
    bytesPerSecond: { type: 'integer', minimum: 0 },
    burstBytes: { type: 'integer', minimum: 1 },
  },
  required: ['bytesPerSecond'],
  additionalProperties: false,
} as const;

/** The update agent: where an update stands, and the download limit (changeable at run time). */
export const otaRoutes: FastifyPluginAsync = async (app) => {
  const bandwidth = () => ({
    bytesPerSecond: Number.isFinite(app.downloadBucket.rate) ? app.downloadBucket.rate : 0,
    burstBytes: app.downloadBucket.burst,
  });

  app.get('/api/v1/ota/status', () => {
    const agent = app.updateAgent;
    return {
      enabled: agent !== undefined,
      status: agent?.status ?? { state: 'idle' },
      failedVersions: agent?.failedVersions ?? [],
      lastDownload: agent?.lastDownload ?? null,
      app: agent?.appStatus ?? null,
      bandwidth: bandwidth(),
    };
  });

  app.put<{ Body: { bytesPerSecond: number; burstBytes?: number } }>(
    '/api/v1/ota/bandwidth',
    { schema: { body: Bandwidth, response: { 200: Bandwidth } } },
    (request, reply) => {
      // Changing the limit is for the device's own tools (and the update server, later), not
      // for whoever reaches port 8080.
      if (!isLoopback(request.socket.remoteAddress)) {
        return reply
          .status(403)
          .send({ statusCode: 403, code: 'FORBIDDEN', message: 'only from the device itself' });
      }
      const { bytesPerSecond, burstBytes } = request.body;
      app.downloadBucket.setLimit(bytesPerSecond > 0 ? bytesPerSecond : Infinity, burstBytes);
      request.log.info(bandwidth(), 'download limit changed');
      return bandwidth();
    },
  );
};

function isLoopback(address: string | undefined): boolean {
  return address === '127.0.0.1' || address === '::1' || address === '::ffff:127.0.0.1';
}
