import type { Config } from '../../src/config.js';
import { TokenBucket } from '../../src/ota/token-bucket.js';
import type { RuntimeDeps } from '../../src/runtime/runtime-plugin.js';
import { buildServer } from '../../src/server.js';
import { testBootState, testConfig } from '../helpers.js';

/** The edge server with the runtime's stand-ins (memory source, scheduler) and a config. */
export function runtimeTestServer(options: {
  config?: Config;
  runtime?: Omit<RuntimeDeps, 'tls'>;
}) {
  return buildServer({
    config: options.config ?? testConfig(),
    firmwareHash: { current: { state: 'failed', slotPath: undefined, reason: 'not under test' } },
    bootState: testBootState().bootState,
    downloadBucket: new TokenBucket(Infinity, 1 << 20),
    runtime: options.runtime,
  });
}
