import { BootState } from '../../src/boot-state.js';
import { loadConfig } from '../../src/config.js';
import { FirmwareHash } from '../../src/firmware-hash.js';
import { bandwidthBucket, createUpdateAgent } from '../../src/ota/create-agent.js';
import { Readiness } from '../../src/readiness.js';

// The update agent alone in its own process, as the edge server assembles it, for tests that
// kill it for real. Settings come from EDGE_* variables; EDGE_TEST_CMDLINE stands in for
// /proc/cmdline (the slot U-Boot booted), which the edge server's config does not move.

const config = loadConfig({ env: process.env });
const cmdlinePath = process.env.EDGE_TEST_CMDLINE;
if (!cmdlinePath) throw new Error('agent-process: EDGE_TEST_CMDLINE is not set');

const line = (level: string) => (object: object, message: string) => {
  const err = (object as { err?: unknown }).err;
  const fields = err instanceof Error ? { ...object, err: err.message } : object;
  process.stdout.write(`${JSON.stringify({ time: Date.now(), level, msg: message, ...fields })}\n`);
};

const agent = await createUpdateAgent(config.ota, {
  bootState: new BootState({ ...config.boot, cmdlinePath }),
  firmwareHash: new FirmwareHash(config.firmware.slotPath),
  readiness: new Readiness(),
  log: { info: line('info'), warn: line('warn'), error: line('error') },
  bucket: bandwidthBucket(config.ota.bandwidthBytesPerSecond, config.ota.bandwidthBurstBytes),
});
// The agent's timers do not hold the process; the edge server's listening socket would.
const alive = setInterval(() => {}, 1 << 30);
process.on('SIGTERM', () => {
  void agent.stop().then(() => {
    clearInterval(alive);
    line('info')({}, 'stopped');
  });
});
line('info')({}, 'agent started');
await agent.start();
