import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  FirmwareHash,
  rootDeviceFromCmdline,
  type FirmwareHashState,
} from '../src/firmware-hash.js';
import { testBootState, testServer } from './helpers.js';

const fixedHash = (state: FirmwareHashState) => ({ current: state });
const { bootState } = testBootState();
const known = fixedHash({
  state: 'known',
  slotPath: '/dev/vda2',
  hash: 'ab'.repeat(32),
  length: 1,
});

test('GET /healthz answers while the process lives', async (t) => {
  const app = await testServer({ firmwareHash: known, bootState });
  const response = await app.inject('/healthz');
  t.is(response.statusCode, 200);
  t.deepEqual(response.json(), { status: 'ok' });
});

test('GET /readyz is 503 until every condition is met, then 200', async (t) => {
  const app = await testServer({ firmwareHash: known, bootState });
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
  const slot = join(mkdtempSync(join(tmpdir(), 'edge-slot-')), 'slot.img');
  const data = randomBytes(2 * 1024 * 1024 + 5);
  writeFileSync(slot, data);
  const firmwareHash = new FirmwareHash(slot);
  await firmwareHash.done;
  const app = await testServer({ firmwareHash, bootState });
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
  const app = await testServer({ firmwareHash: computing, bootState });
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
  const app = await testServer({ firmwareHash, bootState });
  const response = await app.inject('/api/v1/firmware/hash');
  t.is(response.statusCode, 503);
  t.like(response.json(), {
    code: 'FIRMWARE_HASH_FAILED',
    message: 'firmware hash unavailable: cannot read /nonexistent/slot.img: ENOENT',
  });
});

test('"auto" finds the running slot in the kernel command line', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'edge-cmdline-'));
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
  const app = await testServer({ firmwareHash: known, bootState });
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
  const app = await testServer({ firmwareHash: known, bootState });
  const response = await app.inject('/nope');
  t.is(response.statusCode, 404);
  t.like(response.json(), { statusCode: 404 });
});
