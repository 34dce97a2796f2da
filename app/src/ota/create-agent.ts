import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SLOT_PARTITION } from '@edge/formats';
import type { BootState } from '../boot-state.js';
import type { Config } from '../config.js';
import type { FirmwareHash } from '../firmware-hash.js';
import type { Readiness } from '../readiness.js';
import { AppInstaller, type AppActivation } from './app-installer.js';
import { AppStateFile } from './app-state.js';
import { loadDeviceIdentity } from './device-identity.js';
import { SlotHashRecords } from '../slot-hash-records.js';
import { detectBoard, readRelease, standbyPathBeside } from './device-info.js';
import { OtaStateFile } from './ota-state.js';
import { TokenBucket } from './token-bucket.js';
import { TufClient } from './tuf-client.js';
import { UpdateAgent, type AgentLog } from './update-agent.js';
import { UpdateServerClient } from './update-server-client.js';

/** The download limit as configured: 0 bytes a second means none. */
export function bandwidthBucket(bytesPerSecond: number, burstBytes: number): TokenBucket {
  return new TokenBucket(bytesPerSecond > 0 ? bytesPerSecond : Infinity, burstBytes);
}

/** Assembles the update agent from the configuration. */
export async function createUpdateAgent(
  config: Config['ota'],
  services: {
    bootState: BootState;
    firmwareHash: FirmwareHash;
    readiness: Readiness;
    log: AgentLog;
    bucket: TokenBucket;
    /** Loads the modules `<dataDir>/apps/current` holds; without it, app releases are not installed. */
    activateApps?: () => Promise<AppActivation>;
  },
): Promise<UpdateAgent> {
  const serverUrl = config.serverUrl.replace(/\/$/, '');
  const identity = await loadDeviceIdentity(config.dataDir, config.deviceId || undefined);
  const fleetToken = async () => (await readFile(config.fleetTokenFile, 'utf8')).trim();
  const board = config.board === 'auto' ? await detectBoard() : config.board;
  const release = await readRelease(config.releaseFile);
  const { activateApps, ...agentServices } = services;
  const tuf = new TufClient({
    metadataUrl: `${serverUrl}/tuf/metadata`,
    targetsUrl: `${serverUrl}/tuf/targets`,
    cacheDir: join(config.dataDir, 'tuf'),
    trustedRootPath: config.trustedRootPath,
  });
  const apps =
    activateApps &&
    new AppInstaller({
      tuf,
      appsDir: join(config.dataDir, 'apps'),
      stateFile: new AppStateFile(config.dataDir),
      board,
      activate: activateApps,
      bucket: services.bucket,
      log: services.log,
    });
  return new UpdateAgent({
    ...agentServices,
    client: new UpdateServerClient(serverUrl, identity, fleetToken),
    tuf,
    apps,
    stateFile: new OtaStateFile(config.dataDir),
    release: { version: release.version, board },
    standbyPath: (slot, runningPath) =>
      config.standbySlotPath === 'auto'
        ? standbyPathBeside(runningPath, SLOT_PARTITION[slot])
        : config.standbySlotPath,
    downloadsDir: join(config.dataDir, 'downloads'),
    slotHashes: new SlotHashRecords(config.dataDir),
    reboot: () => runCommand(config.rebootCommand),
    healthDeadlineMs: config.healthDeadlineSeconds * 1000,
    downloadStallMs: config.stallTimeoutSeconds * 1000,
    checkInSeconds: config.checkInSeconds,
  });
}

function runCommand(command: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', command], { stdio: 'inherit' });
    child.on('error', reject);
    child.on('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`'${command}' exited with ${code}`)),
    );
  });
}
