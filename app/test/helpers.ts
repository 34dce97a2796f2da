import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BootState } from '../src/boot-state.js';
import { loadConfig, type Config } from '../src/config.js';
import type { FirmwareHashSource } from '../src/firmware-hash.js';
import { TokenBucket } from '../src/ota/token-bucket.js';
import { buildServer } from '../src/server.js';
import { scratchDir } from '../../test/scratch.js';

/** The default configuration with a few settings changed, as EDGE_* variables would. */
export function testConfig(env: Record<string, string> = {}): Config {
  return loadConfig({ env: { EDGE_LOG_LEVEL: 'silent', ...env } });
}

/** A boot state in a temporary folder: a boot partition and a kernel command line. */
export function testBootState(cmdline = 'console=ttyAMA0'): { bootState: BootState; dir: string } {
  const dir = scratchDir('edge-boot');
  writeFileSync(join(dir, 'cmdline'), `${cmdline}\n`);
  const bootState = new BootState({
    stateDir: dir,
    commitMarker: join(dir, 'run', 'committed'),
    cmdlinePath: join(dir, 'cmdline'),
  });
  return { bootState, dir };
}

const noHash: FirmwareHashSource = {
  current: { state: 'failed', slotPath: undefined, reason: 'not under test' },
};

/** The edge server with test defaults for whatever a test does not give. */
export function testServer(deps: {
  firmwareHash?: FirmwareHashSource;
  bootState?: BootState;
  config?: Config;
}) {
  return buildServer({
    config: deps.config ?? testConfig(),
    firmwareHash: deps.firmwareHash ?? noHash,
    bootState: deps.bootState ?? testBootState().bootState,
    downloadBucket: new TokenBucket(Infinity, 1 << 20),
  });
}
