import test, { type ExecutionContext } from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AbStateStore } from '@edge/formats';
import { bootedSlotFromCmdline } from '../src/boot-state.js';
import {
  FirmwareHash,
  rootDeviceFromCmdline,
  type FirmwareHashState,
} from '../src/firmware-hash.js';
import { SLOT_HASHES_FILE, SlotHashRecords } from '../src/slot-hash-records.js';
import { testBootState, testServer } from './helpers.js';
import { scratchDir } from '../../test/scratch.js';

/** A test server closed when its test ends: its scheduler's timers would keep the process alive. */
async function server(t: ExecutionContext, deps: Parameters<typeof testServer>[0]) {
  const app = await testServer(deps);
  t.teardown(() => app.close());
  return app;
}

const fixedHash = (state: FirmwareHashState) => ({ current: state });
const { bootState } = testBootState();
const known = fixedHash({
  state: 'known',
  slotPath: '/dev/vda2',
  hash: 'ab'.repeat(32),
  length: 1,
});

test('GET /healthz answers while the process lives', async (t) => {
  const app = await server(t, { firmwareHash: known, bootState });
  const response = await app.inject('/healthz');
  t.is(response.statusCode, 200);
  t.deepEqual(response.json(), { status: 'ok' });
});

test('GET /readyz is 503 until every condition is met, then 200', async (t) => {
  const app = await server(t, { firmwareHash: known, bootState });
  await app.ready();
  t.is((await app.inject('/readyz')).statusCode, 200);
  app.readiness.require('modules');
  const waiting = await app.inject('/readyz');
  t.is(waiting.statusCode, 503);
  t.like(waiting.json(), { code: 'NOT_READY', message: 'not ready: waiting for modules' });
  t.is(waiting.headers['retry-after'], '2');
  app.readiness.satisfy('modules');
  t.deepEqual((await app.inject('/readyz')).json(), { status: 'ready' });
});

test('GET /api/v1/firmware/hash answers the SHA-256 of the slot file', async (t) => {
  const slot = join(scratchDir('edge-slot'), 'slot.img');
  const data = randomBytes(2 * 1024 * 1024 + 5);
  writeFileSync(slot, data);
  const firmwareHash = new FirmwareHash(slot);
  await firmwareHash.done;
  const app = await server(t, { firmwareHash, bootState });
  const response = await app.inject('/api/v1/firmware/hash');
  t.is(response.statusCode, 200);
  t.deepEqual(response.json(), { hash: createHash('sha256').update(data).digest('hex') });
});

test('the firmware hash is 503 with progress while it is computed', async (t) => {
  const computing = fixedHash({
    state: 'computing',
    slotPath: '/dev/vda2',
    bytesDone: 64 << 20,
    bytesTotal: 256 << 20,
  });
  const app = await server(t, { firmwareHash: computing, bootState });
  const response = await app.inject('/api/v1/firmware/hash');
  t.is(response.statusCode, 503);
  t.is(response.headers['retry-after'], '2');
  t.deepEqual(response.json(), {
    statusCode: 503,
    code: 'FIRMWARE_HASH_PENDING',
    message: 'firmware hash not known yet: hashing /dev/vda2 (25% of 268435456 bytes)',
  });
});

test('the firmware hash is 503 with the reason when the slot cannot be read', async (t) => {
  const firmwareHash = new FirmwareHash('/nonexistent/slot.img');
  t.is(firmwareHash.current.state, 'computing');
  await firmwareHash.done;
  const app = await server(t, { firmwareHash, bootState });
  const response = await app.inject('/api/v1/firmware/hash');
  t.is(response.statusCode, 503);
  t.like(response.json(), {
    code: 'FIRMWARE_HASH_FAILED',
    message: 'firmware hash unavailable: cannot read /nonexistent/slot.img: ENOENT',
  });
});

test('"auto" finds the running slot in the kernel command line', async (t) => {
  const dir = scratchDir('edge-cmdline');
  writeFileSync(join(dir, 'a'), 'console=ttyAMA0 root=/dev/vda2 ro edge.slot=a\n');
  writeFileSync(join(dir, 'b'), 'console=ttyAMA0 root=PARTUUID=4544474B-02 ro\n');
  writeFileSync(join(dir, 'd'), 'console=ttyAMA0 root=LABEL=rootfs ro\n');
  writeFileSync(join(dir, 'c'), 'console=ttyAMA0\n');
  t.is(await rootDeviceFromCmdline(join(dir, 'a')), '/dev/vda2');
  t.is(await rootDeviceFromCmdline(join(dir, 'b')), '/dev/disk/by-partuuid/4544474b-02');
  await t.throwsAsync(rootDeviceFromCmdline(join(dir, 'd')), { message: /neither a \/dev path/ });
  await t.throwsAsync(rootDeviceFromCmdline(join(dir, 'c')), { message: /no root= .*slotPath/ });
  const failed = new FirmwareHash('auto', { cmdlinePath: join(dir, 'c') });
  t.like(await failed.done, { state: 'failed' });
});

test('GET /metrics exposes process, event loop, GC and HTTP metrics', async (t) => {
  const app = await server(t, { firmwareHash: known, bootState });
  await app.inject('/healthz');
  await app.inject('/api/v1/firmware/hash');
  const response = await app.inject('/metrics');
  t.is(response.statusCode, 200);
  t.regex(response.headers['content-type'] as string, /^text\/plain; version=0\.0\.4/);
  const text = response.body;
  for (const name of [
    'process_resident_memory_bytes',
    'process_cpu_seconds_total',
    'nodejs_eventloop_lag_p99_seconds',
    'nodejs_gc_duration_seconds',
    'nodejs_heap_size_used_bytes',
  ]) {
    t.true(text.includes(`# TYPE ${name}`), name);
  }
  t.regex(
    text,
    /http_request_duration_seconds_count\{method="GET",route="\/api\/v1\/firmware\/hash",status_code="200"\} 1/,
  );
});

test('an unknown route is a JSON 404', async (t) => {
  const app = await server(t, { firmwareHash: known, bootState });
  const response = await app.inject('/nope');
  t.is(response.statusCode, 404);
  t.like(response.json(), { statusCode: 404 });
});

// ---- the download limit ----

test('the download limit changes at run time, from the device itself only', async (t) => {
  const app = await server(t, {});
  const status = await app.inject('/api/v1/ota/status');
  t.like(status.json(), { enabled: false, bandwidth: { bytesPerSecond: 0 } });
  const local = await app.inject({
    method: 'PUT',
    url: '/api/v1/ota/bandwidth',
    payload: { bytesPerSecond: 250_000, burstBytes: 65_536 },
  });
  t.deepEqual(local.json(), { bytesPerSecond: 250_000, burstBytes: 65_536 });
  t.is(app.downloadBucket.rate, 250_000);
  const remote = await app.inject({
    method: 'PUT',
    url: '/api/v1/ota/bandwidth',
    payload: { bytesPerSecond: 1 },
    remoteAddress: '192.0.2.7',
  });
  t.is(remote.statusCode, 403);
  t.is(app.downloadBucket.rate, 250_000);
  const bad = await app.inject({
    method: 'PUT',
    url: '/api/v1/ota/bandwidth',
    payload: { bytesPerSecond: -1 },
  });
  t.is(bad.statusCode, 400);
});

// ---- which slot booted, and the commit of a trial ----

const hashFailed = { current: { state: 'failed' as const, slotPath: undefined, reason: 'n/a' } };

test('the kernel command line says which slot booted and whether as a trial', (t) => {
  t.deepEqual(bootedSlotFromCmdline('root=PARTUUID=x-03 edge.slot=b edge.trial=1'), {
    slot: 'b',
    trial: true,
  });
  t.deepEqual(bootedSlotFromCmdline('edge.slot=a edge.trial=0 quiet'), { slot: 'a', trial: false });
  t.is(bootedSlotFromCmdline('edge.slot=c'), undefined);
  t.is(bootedSlotFromCmdline('root=/dev/sda1'), undefined);
});

test('GET /api/v1/firmware/boot is 503 on a host not booted by the boot script', async (t) => {
  const { bootState } = testBootState('root=/dev/sda1');
  const app = await server(t, { firmwareHash: hashFailed, bootState });
  const response = await app.inject('/api/v1/firmware/boot');
  t.is(response.statusCode, 503);
  t.like(response.json(), { code: 'BOOT_STATE_UNKNOWN' });
});

test('GET /api/v1/firmware/boot reports a failed upgrade after a fallback', async (t) => {
  const { bootState, dir } = testBootState('edge.slot=a edge.trial=0');
  await new AbStateStore(dir).write({
    committed: 'a',
    attempts: 0,
    attemptLimit: 3,
    failedUpgrade: 'b',
  });
  const app = await server(t, { firmwareHash: hashFailed, bootState });
  const response = await app.inject('/api/v1/firmware/boot');
  t.is(response.statusCode, 200);
  t.deepEqual(response.json(), {
    slot: 'a',
    trialBoot: false,
    committed: 'a',
    trial: null,
    attempts: 0,
    attemptLimit: 3,
    failedUpgrade: 'b',
  });
});

test('a trial boot of the slot on trial commits it and marks the commit', async (t) => {
  const { bootState, dir } = testBootState('edge.slot=b edge.trial=1');
  const store = new AbStateStore(dir);
  await store.write({ committed: 'a', attempts: 0, attemptLimit: 3 });
  await store.startTrial('b');
  t.is(await bootState.commitIfTrial(), 'committed');
  t.deepEqual(await store.read(), {
    committed: 'b',
    trial: undefined,
    attempts: 0,
    attemptLimit: 3,
    failedUpgrade: undefined,
  });
  t.is(readFileSync(join(dir, 'run', 'committed'), 'utf8'), 'b\n');
});

test('a normal boot commits nothing but still settles the watchdog', async (t) => {
  const { bootState, dir } = testBootState('edge.slot=a edge.trial=0');
  const store = new AbStateStore(dir);
  await store.write({ committed: 'a', trial: 'b', attempts: 1, attemptLimit: 3 });
  t.is(await bootState.commitIfTrial(), 'not a trial');
  t.like(await store.read(), { committed: 'a', trial: 'b', attempts: 1 });
  t.true(existsSync(join(dir, 'run', 'committed')));
});

// ---- the slot hashes recorded across boots ----

function scratch() {
  const dir = scratchDir('edge-slot-hashes');
  const slot = join(dir, 'slot-b.img');
  writeFileSync(slot, Buffer.alloc(256 * 1024, 7));
  return { dir, slot, records: new SlotHashRecords(dir) };
}

test('a recorded slot is known again; forgetting it or changing its first bytes drops it', async (t) => {
  const { dir, slot, records } = scratch();
  const hash = { sha256: 'cd'.repeat(32), length: 256 * 1024 };
  t.is(await records.lookup(slot), undefined);
  await records.remember(slot, hash);
  t.deepEqual(await new SlotHashRecords(dir).lookup(slot), hash);

  // Written from outside the agent (its superblock changes): measured again.
  writeFileSync(slot, Buffer.alloc(256 * 1024, 8));
  t.is(await records.lookup(slot), undefined);

  await records.remember(slot, hash);
  await records.forget(slot);
  t.is(await records.lookup(slot), undefined);
});

test('a garbled or torn record file means measuring again, never a wrong hash', async (t) => {
  const { dir, slot, records } = scratch();
  for (const text of ['', '{"', 'null', '[]']) {
    writeFileSync(join(dir, SLOT_HASHES_FILE), text);
    t.is(await records.lookup(slot), undefined, JSON.stringify(text));
  }
  await records.remember(slot, { sha256: 'ef'.repeat(32), length: 1 });
  t.truthy(await records.lookup(slot), 'a garbled file is replaced');
});

test('the firmware hash is measured once, then taken from the record at the next boot', async (t) => {
  const { dir, slot } = scratch();
  const first = await new FirmwareHash(slot, { records: new SlotHashRecords(dir) }).done;
  t.like(first, { state: 'known', length: 256 * 1024 });
  t.false('recorded' in first);
  const next = await new FirmwareHash(slot, { records: new SlotHashRecords(dir) }).done;
  t.deepEqual(next, { ...first, recorded: true });
});
