import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BootState } from '../src/boot-state.js';
import { loadConfig, type Config } from '../src/config.js';

/** The default configuration with a few settings changed, as EDGE_* variables would. */
export function testConfig(env: Record<string, string> = {}): Config {
  return loadConfig({ env: { EDGE_LOG_LEVEL: 'silent', ...env } });
}

/** A boot state in a temporary folder: a boot partition and a kernel command line. */
export function testBootState(cmdline = 'console=ttyAMA0'): { bootState: BootState; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), 'edge-boot-'));
  writeFileSync(join(dir, 'cmdline'), `${cmdline}\n`);
  const bootState = new BootState({
    stateDir: dir,
    commitMarker: join(dir, 'run', 'committed'),
    cmdlinePath: join(dir, 'cmdline'),
  });
  return { bootState, dir };
}
