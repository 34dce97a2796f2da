import type { FastifyPluginAsync } from 'fastify';
import { FirmwareHashFailed, FirmwareHashPending } from '../errors.js';

const HashResponse = {
  type: 'object',
  properties: { hash: { type: 'string', pattern: '^[0-9a-f]{64}$' } },
  required: ['hash'],
} as const;

/** What firmware the device runs: the SHA-256 of its root slot. */
export const firmwareRoutes: FastifyPluginAsync = async (app) => {
  app.get('/api/v1/firmware/hash', { schema: { response: { 200: HashResponse } } }, () => {
    const current = app.firmwareHash.current;
    switch (current.state) {
      case 'known':
        return { hash: current.hash };
      case 'failed':
        throw new FirmwareHashFailed(current.reason);
      case 'computing': {
        const progress =
          current.bytesTotal > 0
            ? `hashing ${current.slotPath} (${Math.floor((100 * current.bytesDone) / current.bytesTotal)}% of ${current.bytesTotal} bytes)`
            : `hashing ${current.slotPath ?? 'the running slot'}`;
        throw new FirmwareHashPending(progress);
      }
    }
  });
};
