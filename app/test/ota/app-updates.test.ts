import test from 'ava';
import {
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { targetFileRelativePath } from '@edge/formats';
import type { AppInstallState } from '../../src/ota/app-state.js';
import type { ModuleRegistry } from '../../src/sandbox/module-registry.js';
import { guestWat, manifestFor, testRegistry, wat } from '../sandbox/sandbox-helpers.js';
import {
  bootAgent,
  deviceIdOf,
  deviceRecord,
  makeFileDevice,
  otaServer,
  startFleet,
  type FileDevice,
  type Fleet,
  type UpdateAgent,
} from './fleet.js';

// App releases without a reboot, against the real update server: published with
// `ota-server publish-app`, installed by the agent into <data>/apps/<version>, switched by the
// `current` link and activated by the real sandbox (ModuleRegistry.reloadFromDirectory).
// The device already runs the firmware the server wants: only the app changes.

const SLOT_BYTES = 2 * 1024 * 1024;
/** The Pi 4 SD card image, zstd -19 (README's figures): what a full update would weigh. */
const FULL_IMAGE_ZSTD_BYTES = 46.5e6;

let fleet: Fleet;
let device: AppDevice;

interface AppDevice extends FileDevice {
  apps: string;
  registry: ModuleRegistry;
  boot(): Promise<UpdateAgent>;
}

/** A module folder: manifest.json and <name>.wasm, the guest answering `version` with `v`. */
function moduleFiles(name: string, wasm: Uint8Array): Record<string, Buffer> {
  return {
    [`modules/${name}/manifest.json`]: Buffer.from(JSON.stringify(manifestFor(name, wasm))),
    [`modules/${name}/${name}.wasm`]: Buffer.from(wasm),
  };
}

let appSeq = 0;
/** Publishes an app release of the qemu board from files in a fresh folder. */
async function publishApp(version: string, files: Record<string, Buffer>): Promise<void> {
  const folder = join(fleet.dir, `app-${appSeq++}`);
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(folder, path, '..'), { recursive: true });
    writeFileSync(join(folder, path), content);
  }
  await otaServer([
    ...['publish-app', '--repo', fleet.repo, '--board', 'qemu', '--version', version],
    folder,
  ]);
}

/** A device on 1.0.0 firmware (the release rolled out), with the real sandbox over its apps. */
async function makeDevice(): Promise<AppDevice> {
  const files = await makeFileDevice(fleet);
  const apps = join(files.data, 'apps');
  const registry = testRegistry({ dir: join(apps, 'current', 'modules') });
  return {
    ...files,
    apps,
    registry,
    async boot() {
      const agent = await bootAgent(fleet, files, {
        activateApps: () => registry.reloadFromDirectory(),
      });
      await agent.load();
      return agent;
    },
  };
}

function appState(): AppInstallState {
  return JSON.parse(readFileSync(join(device.data, 'app-state.json'), 'utf8')) as AppInstallState;
}

function releaseFolders(): string[] {
  return readdirSync(device.apps).sort();
}

async function callVersion(name: string): Promise<unknown> {
  return (await device.registry.call(name, 'version', { kind: 'args', args: [] })).value;
}

test.before(async () => {
  fleet = await startFleet({ slotBytes: SLOT_BYTES, releases: [{ version: '1.0.0', files: {} }] });
  device = await makeDevice();
});
test.after.always(async () => {
  await device?.registry.close();
  await fleet?.stop();
  if (fleet) rmSync(fleet.dir, { recursive: true, force: true });
});

test.serial('an app release installs and the next replaces it, without a reboot', async (t) => {
  const agent = await device.boot();
  await agent.cycle();
  t.deepEqual(releaseFolders(), [], 'no app release published: nothing installed');

  const config = Buffer.from('{"intervalMs":1000}\n');
  await publishApp('1.0.0', {
    ...moduleFiles('probe', wat(guestWat({ version: 1 }))),
    'config/probe.json': config,
  });
  await agent.cycle();
  t.like(agent.appStatus, { version: '1.0.0', state: 'installed', targetVersion: '1.0.0' });
  t.is(readlinkSync(join(device.apps, 'current')), '1.0.0');
  t.deepEqual(readFileSync(join(device.apps, '1.0.0', 'config', 'probe.json')), config);
  t.is(await callVersion('probe'), 1, 'the sandbox runs the module of 1.0.0');

  // An app-only change: one module changed, one added.
  await publishApp('1.1.0', {
    ...moduleFiles('probe', wat(guestWat({ version: 2 }))),
    ...moduleFiles('second', wat(guestWat({ version: 7 }))),
    'config/probe.json': config,
  });
  await agent.cycle();
  t.like(agent.appStatus, { version: '1.1.0', state: 'installed' });
  t.is(readlinkSync(join(device.apps, 'current')), '1.1.0');
  t.deepEqual(releaseFolders(), ['1.0.0', '1.1.0', 'current'], '1.0.0 kept for rollback');
  t.is(await callVersion('probe'), 2, 'the new module serves, no restart');
  t.is(await callVersion('second'), 7);
  t.false(existsSync(device.rebootMarker), 'no reboot');

  const fetched = appState().lastDownload!;
  t.is(fetched.version, '1.1.0');
  const metadata = ['timestamp.json', ...newestMetadata('snapshot'), ...newestMetadata('targets')]
    .map((file) => statSync(join(fleet.repo, 'metadata', file)).size)
    .reduce((a, b) => a + b, 0);
  const total = fetched.bytes + metadata;
  t.log(
    `app-only change: ${fetched.bytes} B of app files and index + ${metadata} B of TUF metadata ` +
      `= ${total} B, ${((100 * total) / FULL_IMAGE_ZSTD_BYTES).toFixed(3)}% of the 46.5 MB ` +
      'compressed full image',
  );
  t.true(total < 0.02 * FULL_IMAGE_ZSTD_BYTES);

  await publishApp('1.2.0', moduleFiles('probe', wat(guestWat({ version: 3 }))));
  await agent.cycle();
  t.deepEqual(releaseFolders(), ['1.1.0', '1.2.0', 'current'], 'older releases deleted');
  t.is(await callVersion('probe'), 3);
  t.false(
    device.registry.list().some((module) => module.name === 'second'),
    'removed with it',
  );
  const record = await deviceRecord(fleet, await deviceIdOf(device));
  t.like(record.lastCheckIn, { version: '1.0.0', app: { version: '1.2.0', state: 'installed' } });
  t.false(existsSync(device.rebootMarker));
});

test.serial(
  'a module the sandbox refuses: back to the previous release, reported, not retried',
  async (t) => {
    // No memory maximum: the sandbox refuses it.
    const unbounded = wat(
      '(module (memory (export "memory") 1) (func (export "version") (result i32) (i32.const 9)))',
    );
    await publishApp('1.3.0', {
      ...moduleFiles('probe', wat(guestWat({ version: 4 }))),
      ...moduleFiles('unbounded', unbounded),
    });
    const agent = await device.boot();
    await agent.cycle();
    t.like(agent.appStatus, { version: '1.2.0', state: 'rolled-back', targetVersion: '1.3.0' });
    t.regex(agent.appStatus?.reason ?? '', /modules refused: unbounded/);
    t.is(readlinkSync(join(device.apps, 'current')), '1.2.0');
    t.deepEqual(releaseFolders(), ['1.1.0', '1.2.0', 'current']);
    t.is(await callVersion('probe'), 3, 'the previous release serves again');
    t.deepEqual(appState().failedVersions, ['1.3.0']);
    const record = await deviceRecord(fleet, await deviceIdOf(device));
    t.like(record.lastCheckIn, { app: { state: 'rolled-back', targetVersion: '1.3.0' } });

    await agent.cycle();
    t.like(agent.appStatus, { state: 'rolled-back' }, 'not installed again');
    t.false(existsSync(device.rebootMarker));
  },
);

test.serial('a tampered app file is refused before `current` changes', async (t) => {
  const wasm = wat(guestWat({ version: 5 }));
  await publishApp('1.4.0', moduleFiles('probe', wasm));
  const state = JSON.parse(
    readFileSync(join(fleet.repo, 'metadata', newestMetadata('targets')[0]!), 'utf8'),
  ) as { signed: { targets: Record<string, { hashes: { sha256: string } }> } };
  const name = 'qemu/apps/1.4.0/modules/probe/probe.wasm';
  const stored = join(
    fleet.repo,
    'targets',
    targetFileRelativePath(name, state.signed.targets[name]!.hashes.sha256),
  );
  const original = readFileSync(stored);
  const tampered = Buffer.from(original);
  tampered[tampered.length - 1]! ^= 0x01;
  writeFileSync(stored, tampered);
  t.teardown(() => writeFileSync(stored, original));

  const agent = await device.boot();
  await agent.cycle();
  t.like(agent.appStatus, { version: '1.2.0', state: 'failed', targetVersion: '1.4.0' });
  t.regex(agent.appStatus?.reason ?? '', /SHA-256/);
  t.is(readlinkSync(join(device.apps, 'current')), '1.2.0');
  t.deepEqual(releaseFolders(), ['1.1.0', '1.2.0', 'current'], 'no folder of 1.4.0, no .partial');
  t.is(await callVersion('probe'), 3);
});

test.serial(
  'a start after a power cut: leftovers removed, a half-done activation undone',
  async (t) => {
    // Cut mid-download and mid-switch: a .partial folder and a current.new link.
    mkdirSync(join(device.apps, '2.0.0.partial', 'modules'), { recursive: true });
    writeFileSync(join(device.apps, '2.0.0.partial', 'modules', 'half'), 'x');
    symlinkSync('2.0.0', join(device.apps, 'current.new'));
    // Cut after `current` switched to 1.2.0 from 1.1.0, before activation finished.
    const state = appState();
    writeFileSync(
      join(device.data, 'app-state.json'),
      JSON.stringify({
        ...state,
        installed: '1.1.0',
        activating: { version: '1.2.0', previous: '1.1.0' },
      }),
    );
    const agent = await device.boot();
    t.deepEqual(releaseFolders(), ['1.1.0', '1.2.0', 'current']);
    t.is(readlinkSync(join(device.apps, 'current')), '1.1.0', 'switched back');
    t.like(agent.appStatus, { version: '1.1.0', state: 'rolled-back', targetVersion: '1.2.0' });
    t.is(await callVersion('probe'), 2, 'the release before serves');
    t.false(appState().failedVersions.includes('1.2.0'), 'one cut does not condemn a release');

    // The newest release (1.4.0) was refused: nothing to do until a newer one comes.
    await agent.cycle();
    t.is(readlinkSync(join(device.apps, 'current')), '1.1.0');
    await publishApp('1.5.0', moduleFiles('probe', wat(guestWat({ version: 6 }))));
    await agent.cycle();
    t.is(readlinkSync(join(device.apps, 'current')), '1.5.0');
    t.deepEqual(releaseFolders(), ['1.1.0', '1.5.0', 'current']);
    t.is(await callVersion('probe'), 6);
    t.false(existsSync(device.rebootMarker));
  },
);

function newestMetadata(role: 'snapshot' | 'targets'): string[] {
  const versions = readdirSync(join(fleet.repo, 'metadata'))
    .map((name) => new RegExp(`^(\\d+)\\.${role}\\.json$`).exec(name)?.[1])
    .filter((version): version is string => version !== undefined)
    .map(Number);
  return [`${Math.max(...versions)}.${role}.json`];
}
