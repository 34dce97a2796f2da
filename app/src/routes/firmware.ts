import type { FastifyPluginAsync } from 'fastify';
import { BootStateUnknown, FirmwareHashFailed, FirmwareHashPending } from '../errors.js';

const HashResponse = {
  type: 'object',
  properties: { hash: { type: 'string', pattern: '^[0-9a-f]{64}$' } },
  required: ['hash'],
} as const;

const Slot = { type: 'string', enum: ['a', 'b'] } as const;
const BootResponse = {
  type: 'object',
  properties: {
    slot: Slot,
    trialBoot: { type: 'boolean' },
    committed: Slot,
    trial: { ...Slot, nullable: true },
    attempts: { type: 'integer' },
    attemptLimit: { type: 'integer' },
    failedUpgrade: { ...Slot, nullable: true },
  },
  required: [
    'slot',
    'trialBoot',
    'committed',
    'trial',
    'attempts',
    'attemptLimit',
    'failedUpgrade',
  ],
} as const;

/** What firmware the device runs: the SHA-256 of its root slot, and its A/B boot state. */
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

  app.get('/api/v1/firmware/boot', { schema: { response: { 200: BootResponse } } }, async () => {
    const report = await app.bootState.report();
    if (!report.known) throw new BootStateUnknown(report.reason);
    return {
      slot: report.booted.slot,
      trialBoot: report.booted.trial,
      committed: report.committed,
      trial: report.trial ?? null,
      attempts: report.attempts,
      attemptLimit: report.attemptLimit,
      failedUpgrade: report.failedUpgrade ?? null,
    };
  });
};
