import { parseArgs } from 'node:util';
import { ConfigError, DEFAULT_CONFIG_FILE, loadConfig, type ConfigSources } from './config.js';
import { BootState } from './boot-state.js';
import { FirmwareHash } from './firmware-hash.js';
import { SlotHashRecords } from './slot-hash-records.js';
import { bandwidthBucket, createUpdateAgent } from './ota/create-agent.js';
import { buildServer } from './server.js';
import { ModuleRegistry } from './sandbox/module-registry.js';
import { createUplinkSender } from './sandbox/uplink-sender.js';

const EX_CONFIG = 78;

function configSources(): ConfigSources {
  const { values } = parseArgs({ options: { config: { type: 'string', short: 'c' } } });
  const named = values.config ?? process.env.EDGE_CONFIG;
  return {
    file: named ? { path: named, required: true } : { path: DEFAULT_CONFIG_FILE, required: false },
    env: process.env,
  };
}

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(configSources());
  } catch (error) {
    // parseArgs throws TypeError for an unknown or malformed option.
    if (!(error instanceof ConfigError) && !(error instanceof TypeError)) throw error;
    const kind = error instanceof ConfigError ? 'config error' : 'usage error';
    process.stderr.write(`edge-server: ${kind}: ${error.message}\n`);
    process.exit(EX_CONFIG);
  }

  let listening!: () => void;
  const firmwareHash = new FirmwareHash(config.firmware.slotPath, {
    after: new Promise<void>((resolve) => (listening = resolve)),
    records: new SlotHashRecords(config.ota.dataDir),
  });
  const bootState = new BootState(config.boot);
  const downloadBucket = bandwidthBucket(
    config.ota.bandwidthBytesPerSecond,
    config.ota.bandwidthBurstBytes,
  );
  const app = await buildServer({ config, firmwareHash, bootState, downloadBucket });
  app.modules = new ModuleRegistry(config.modules, {
    log: app.log.child({ component: 'modules' }),
    uplink: createUplinkSender(config.ota),
    metricsRegistry: app.metricsRegistry,
    scheduler: app.scheduler,
    // Scheduled calls pause with the call route under memory pressure (load-shedding.ts).
    shedding: () => app.memoryPressure.isHigh(),
  });
  void firmwareHash.done.then((result) => {
    if (result.state === 'known') app.log.info({ firmware: result }, 'firmware hash known');
    else app.log.warn({ firmware: result }, 'firmware hash unavailable');
  });

  let closing = false;
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      if (closing) return;
      closing = true;
      app.log.info({ signal }, 'shutting down');
      const force = setTimeout(() => process.exit(1), 10_000).unref();
      void Promise.all([app.updateAgent?.stop(), app.modules?.close(), app.close()]).then(() => {
        clearTimeout(force);
        process.exit(0);
      });
    });
  }

  await app.listen({ host: config.server.host, port: config.server.port });
  listening();
  // Modules load once the server answers: a broken module does not hold up the health check.
  app.modules.reloadFromDirectory().then(
    (report) => app.log.info({ modules: report }, 'modules loaded'),
    (error: unknown) => app.log.error({ err: error }, 'cannot load modules'),
  );
  if (!config.ota.serverUrl) {
    // No update agent: being up and ready is the health check that keeps this slot.
    bootState.commitIfTrial().then(
      (outcome) => app.log.info({ outcome }, 'boot slot settled'),
      (error: unknown) => app.log.error({ err: error }, 'cannot commit the boot slot'),
    );
    return;
  }
  const agent = await createUpdateAgent(config.ota, {
    bootState,
    firmwareHash,
    readiness: app.readiness,
    log: app.log,
    bucket: downloadBucket,
    activateApps: () => app.modules!.reloadFromDirectory(),
  });
  app.updateAgent = agent;
  agent.start().catch((error: unknown) => app.log.error({ err: error }, 'update agent stopped'));
}

main().catch((error: unknown) => {
  process.stderr.write(`edge-server: ${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
