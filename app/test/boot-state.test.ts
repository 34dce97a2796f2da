import test from 'ava';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AbStateStore } from '@edge/formats';
import { bootedSlotFromCmdline } from '../src/boot-state.js';
import { testBootState, testServer } from './helpers.js';

const known = { current: { state: 'failed' as const, slotPath: undefined, reason: 'n/a' } };

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
  const app = await testServer({ firmwareHash: known, bootState });
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
  const app = await testServer({ firmwareHash: known, bootState });
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
