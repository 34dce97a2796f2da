import test from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  AB_STATE_SIZE,
  AbStateStore,
  NoValidEnvCopyError,
  RedundantEnvFile,
  UbootEnvError,
  abStateFromEnv,
  abStateToEnv,
  decodeUbootEnv,
  encodeUbootEnv,
  type AbState,
} from '@edge/formats';
import { scratchDir } from '../../test/scratch.js';

/** A boot folder with copy 1 and copy 2 as given (undefined: no file). */
function bootDir(copy1?: Buffer, copy2?: Buffer) {
  const dir = scratchDir('uboot-env-store');
  const paths = [join(dir, 'abstate1.env'), join(dir, 'abstate2.env')] as const;
  if (copy1) writeFileSync(paths[0], copy1);
  if (copy2) writeFileSync(paths[1], copy2);
  return {
    dir,
    paths,
    store: RedundantEnvFile.abState(dir),
    bytes: (copy: 1 | 2) => readFileSync(copy === 1 ? paths[0] : paths[1]),
  };
}

const env = (vars: Record<string, string>) => encodeUbootEnv(vars, AB_STATE_SIZE);
const corrupt = (bytes: Buffer) => {
  const copy = Buffer.from(bytes);
  copy.writeUInt8(copy.readUInt8(200) ^ 0x5a, 200);
  return copy;
};

test('the valid copy with the highest ab_seq wins', async (t) => {
  const { store } = bootDir(
    env({ ab_seq: 'f', ab_slot: 'a' }),
    env({ ab_seq: '10', ab_slot: 'b' }),
  );
  const state = await store.read();
  t.is(state.copy, 2);
  t.is(state.sequence, 16); // hex: 0x10 > 0xf
  t.deepEqual(state.vars, { ab_seq: '10', ab_slot: 'b' });
  t.deepEqual(
    state.copies.map((c) => c.sequence),
    [15, 16],
  );
});

test('a tie goes to copy 1', async (t) => {
  const { store } = bootDir(env({ ab_seq: '4', ab_slot: 'a' }), env({ ab_seq: '4', ab_slot: 'b' }));
  t.like(await store.read(), { copy: 1, vars: { ab_slot: 'a' } });
});

test('a copy with a bad CRC is ignored, and the next write overwrites it, not the good one', async (t) => {
  const good = env({ ab_seq: '3', ab_slot: 'b' });
  const box = bootDir(good, corrupt(env({ ab_seq: '99', ab_slot: 'a' })));
  const state = await box.store.read();
  t.like(state, { copy: 1, sequence: 3, vars: { ab_slot: 'b' } });
  t.regex(state.copies[1].problem ?? '', /CRC32/);

  const inode = statSync(box.paths[1]).ino;
  t.deepEqual(await box.store.write({ ab_slot: 'a' }), { copy: 2, sequence: 4 });
  t.deepEqual(box.bytes(1), good);
  t.deepEqual(decodeUbootEnv(box.bytes(2)), { ab_seq: '4', ab_slot: 'a' });
  t.is(statSync(box.paths[1]).ino, inode, 'overwritten in place, not recreated');
});

test('a write goes to the copy that is not the newest, and the newest is never touched', async (t) => {
  const newest = env({ ab_seq: '8', ab_slot: 'b' });
  const box = bootDir(env({ ab_seq: '7', ab_slot: 'a' }), newest);
  t.deepEqual(await box.store.write({ ab_slot: 'a', ab_trial: '1' }), { copy: 1, sequence: 9 });
  t.deepEqual(box.bytes(2), newest);
  t.like(await box.store.read(), { copy: 1, sequence: 9, vars: { ab_slot: 'a', ab_trial: '1' } });
  t.deepEqual(await box.store.write({ ab_slot: 'a' }), { copy: 2, sequence: 10 });
  t.like(await box.store.read(), { copy: 2, sequence: 10, vars: { ab_seq: 'a', ab_slot: 'a' } });
});

test('a write cut short never loses the previous good state', async (t) => {
  const previous = env({ ab_seq: '5', ab_slot: 'a' });
  const older = env({ ab_seq: '4', ab_slot: 'a', note: 'o'.repeat(1500) });
  const next = env({ ab_seq: '6', ab_slot: 'b', note: 'n'.repeat(1500) });
  for (const [what, leftBehind] of [
    [
      'first 512 bytes written over the older copy',
      Buffer.concat([next.subarray(0, 512), older.subarray(512)]),
    ],
    ['all but the CRC written', Buffer.concat([older.subarray(0, 4), next.subarray(4)])],
    ['the file cut to 1000 bytes', next.subarray(0, 1000)],
    ['an empty file', Buffer.alloc(0)],
  ] as const) {
    const box = bootDir(previous, leftBehind);
    const state = await box.store.read();
    t.like(state, { copy: 1, sequence: 5, vars: { ab_slot: 'a' } }, what);
    t.truthy(state.copies[1].problem, what);
    t.deepEqual(
      await box.store.write({ ab_slot: 'b', note: 'n'.repeat(1500) }),
      { copy: 2, sequence: 6 },
      what,
    );
    t.deepEqual(box.bytes(2), next, what);
    t.deepEqual(box.bytes(1), previous, what);
  }
});

test('neither copy valid: a typed error naming both, and the caller can write defaults', async (t) => {
  const box = bootDir(corrupt(env({ ab_seq: '2' })));
  const error = await t.throwsAsync(box.store.read(), { instanceOf: NoValidEnvCopyError });
  t.is(error?.code, 'ENV_NO_VALID_COPY');
  t.regex(error?.copies[0].problem ?? '', /CRC32/);
  t.is(error?.copies[1].problem, 'missing');
  await t.throwsAsync(box.store.update({ ab_slot: 'a' }), { instanceOf: NoValidEnvCopyError });

  t.deepEqual(await box.store.write({ ab_slot: 'a' }), { copy: 1, sequence: 1 });
  t.like(await box.store.read(), { copy: 1, sequence: 1, vars: { ab_slot: 'a' } });
});

test('first use: missing files are created, one per write, then used in turn', async (t) => {
  const box = bootDir();
  t.deepEqual(await box.store.write({ ab_slot: 'a' }), { copy: 1, sequence: 1 });
  t.false(existsSync(box.paths[1]));
  t.deepEqual(await box.store.write({ ab_slot: 'a' }), { copy: 2, sequence: 2 });
  t.deepEqual(await box.store.write({ ab_slot: 'b' }), { copy: 1, sequence: 3 });
  t.is(box.bytes(1).length, AB_STATE_SIZE);
  t.is(box.bytes(2).length, AB_STATE_SIZE);
});

test('bad input is refused before anything is written', async (t) => {
  const copy1 = env({ ab_seq: '1', ab_slot: 'a' });
  const copy2 = env({ ab_seq: '2', ab_slot: 'a' });
  const box = bootDir(copy1, copy2);
  for (const [vars, code] of [
    [{ 'ab=slot': 'a' }, 'ENV_BAD_NAME'],
    [{ '': 'a' }, 'ENV_BAD_NAME'],
    [{ ab_slot: 'a\nb' }, 'ENV_BAD_VALUE'],
    [{ ab_slot: 'a\0b' }, 'ENV_BAD_VALUE'],
    [{ big: 'x'.repeat(AB_STATE_SIZE) }, 'ENV_TOO_BIG'],
  ] as const) {
    const error = await t.throwsAsync(box.store.write(vars), { instanceOf: UbootEnvError });
    t.is(error?.code, code);
  }
  t.deepEqual(box.bytes(1), copy1);
  t.deepEqual(box.bytes(2), copy2);
  const fresh = bootDir();
  await t.throwsAsync(fresh.store.write({ ab_slot: 'a\nb' }), { instanceOf: UbootEnvError });
  t.false(existsSync(fresh.paths[0]));
});

test('update changes some variables and unsets those given empty', async (t) => {
  const box = bootDir(env({ ab_seq: '1', ab_slot: 'a', ab_trial: '2', keep: 'me' }));
  const state = await box.store.update({
    ab_slot: 'b',
    ab_trial: undefined,
    ab_new: '1',
    missing: '',
  });
  t.deepEqual(state.vars, { ab_seq: '2', ab_slot: 'b', keep: 'me', ab_new: '1' });
  t.is(state.copy, 2);
});

test('a copy without ab_seq counts as 0; one with a malformed ab_seq is ignored', async (t) => {
  t.like(await bootDir(env({ ab_slot: 'a' }), env({ ab_seq: '1', ab_slot: 'b' })).store.read(), {
    copy: 2,
  });
  const box = bootDir(env({ ab_seq: 'x1', ab_slot: 'a' }), env({ ab_seq: '3', ab_slot: 'b' }));
  const state = await box.store.read();
  t.like(state, { copy: 2, sequence: 3 });
  t.regex(state.copies[0].problem ?? '', /ab_seq "x1" is not a base-16 sequence number/);
});

test("ab_seq is hex, as the boot script's setexpr writes it; decimal when asked for", async (t) => {
  const box = bootDir(env({ ab_seq: '9', ab_slot: 'a' }), env({ ab_seq: 'a', ab_slot: 'b' }));
  t.like(await box.store.read(), { copy: 2, sequence: 10 });
  t.deepEqual(await box.store.write({ ab_slot: 'b' }), { copy: 1, sequence: 11 });
  t.is(decodeUbootEnv(box.bytes(1)).ab_seq, 'b');
  t.like(await RedundantEnvFile.abState(box.dir).read(), { copy: 1, sequence: 11 });
  t.like(await bootDir(env({ ab_seq: '0x1f' })).store.read(), { sequence: 31 }); // hextoul accepts 0x too

  const decimal = bootDir(env({ ab_seq: '9' }), env({ ab_seq: '10' }));
  const store = RedundantEnvFile.abState(decimal.dir, { sequenceRadix: 10 });
  t.like(await store.read(), { copy: 2, sequence: 10 });
  t.deepEqual(await store.write({}), { copy: 1, sequence: 11 });
  t.is(decodeUbootEnv(decimal.bytes(1)).ab_seq, '11');
});

test('stock fw_printenv reads the copy the store wrote', (t) => {
  const box = bootDir();
  return box.store.write({ ab_slot: 'b', ab_trial: '1' }).then(() => {
    const config = join(box.dir, 'fw_env.config');
    writeFileSync(config, `${box.paths[0]} 0x0 0x1000\n`);
    const printed = spawnSync('/usr/bin/fw_printenv', ['-c', config], { encoding: 'utf8' });
    t.is(printed.status, 0, printed.stderr);
    t.is(printed.stdout, 'ab_seq=1\nab_slot=b\nab_trial=1\n');
  });
});

// ---- the A/B state the boot script reads, kept by the store ----

const scratch = () => scratchDir('ab-state');

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

test('before a slot is rewritten, its old trial and its old failure are cleared, nothing else', async (t) => {
  const store = new AbStateStore(scratch());
  await store.write({ committed: 'a', attempts: 2, attemptLimit: 3, trial: 'b' });
  t.deepEqual(await store.releaseStandby('b'), { committed: 'a', attempts: 0, attemptLimit: 3 });
  await store.write({ committed: 'a', attempts: 0, attemptLimit: 3, failedUpgrade: 'b' });
  await store.releaseStandby('b');
  t.like(await store.read(), { committed: 'a', attempts: 0, failedUpgrade: undefined });
  // The booted slot on trial, and a failure of the other slot, are not the standby's to clear.
  const other = {
    committed: 'a',
    attempts: 1,
    attemptLimit: 3,
    trial: 'b',
    failedUpgrade: 'b',
  } as const;
  await store.write(other);
  t.deepEqual(await store.releaseStandby('a'), other);
});
