import test from 'ava';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AbStateStore, abStateFromEnv, abStateToEnv, type AbState } from '@edge/formats';

const scratch = () => mkdtempSync(join(tmpdir(), 'ab-state-'));

test('the state maps to the boot script variables, numbers in hex', (t) => {
  const state: AbState = { committed: 'a', trial: 'b', attempts: 10, attemptLimit: 12 };
  t.deepEqual(abStateToEnv(state), { ab_good: 'a', ab_try: 'b', ab_tries: 'a', ab_limit: 'c' });
  t.deepEqual(abStateFromEnv({ ...abStateToEnv(state), ab_seq: '1f' }), {
    ...state,
    failedUpgrade: undefined,
  });
});

test('bad variables are refused with their name', (t) => {
  t.throws(() => abStateFromEnv({ ab_good: 'c' }), { message: /ab_good=c is not a slot name/ });
  t.throws(() => abStateFromEnv({ ab_tries: 'many' }), { message: /ab_tries=many is not hex/ });
});

test('with neither copy valid the store reads what the boot script assumes', async (t) => {
  const dir = scratch();
  writeFileSync(join(dir, 'abstate1.env'), Buffer.alloc(0x1000, 0xff));
  t.deepEqual(await new AbStateStore(dir).read(), { committed: 'a', attempts: 0, attemptLimit: 3 });
});

test('a trial starts, then commits; a trial of the committed slot is refused', async (t) => {
  const store = new AbStateStore(scratch());
  await store.write({ committed: 'a', attempts: 0, attemptLimit: 3, failedUpgrade: 'b' });
  await t.throwsAsync(store.startTrial('a'), { message: /committed slot already/ });
  t.like(await store.startTrial('b'), { trial: 'b', attempts: 0, failedUpgrade: undefined });
  await t.throwsAsync(store.commit('a'), { message: /not on trial/ });
  t.like(await store.commit('b'), { committed: 'b', trial: undefined });
});
