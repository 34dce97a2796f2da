import createError from '@fastify/error';

/** Every error the edge server answers with: a stable code, an HTTP status, a message. */
export const FirmwareHashPending = createError<[string]>(
  'FIRMWARE_HASH_PENDING',
  'firmware hash not known yet: %s',
  503,
);
export const FirmwareHashFailed = createError<[string]>(
  'FIRMWARE_HASH_FAILED',
  'firmware hash unavailable: %s',
  503,
);
export const NotReady = createError<[string]>('NOT_READY', 'not ready: waiting for %s', 503);
export const BootStateUnknown = createError<[string]>(
  'BOOT_STATE_UNKNOWN',
  'boot state unknown: %s',
  503,
);
