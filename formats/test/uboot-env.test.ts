import test from 'ava';
import { crc32 } from 'node:zlib';
import { UbootEnvError, decodeUbootEnv, encodeUbootEnv, ubootEnvCrcIsValid } from '@edge/formats';

const SIZE = 0x1000;

/** A block laid out by hand: CRC32 (LE) of everything after it, then the data, zero-padded. */
function block(data: string, size = SIZE): Buffer {
  const bytes = Buffer.alloc(size);
  Buffer.from(data, 'utf8').copy(bytes, 4);
  bytes.writeUInt32LE(crc32(bytes.subarray(4)) >>> 0, 0);
  return bytes;
}

test('encodes as env export -c -s does: names sorted by byte, an empty entry, zero padding', (t) => {
  const vars = {
    zeta: 'last',
    ab_seq: '7',
    Ab: 'upper',
    ab_slot: 'a',
    ab_: 'x',
    'a.b': 'dot',
    _u: 'u',
    utf: 'é',
  };
  const bytes = encodeUbootEnv(vars, SIZE);
  t.is(bytes.length, SIZE);
  t.deepEqual(
    bytes,
    block('Ab=upper\0_u=u\0a.b=dot\0ab_=x\0ab_seq=7\0ab_slot=a\0utf=é\0zeta=last\0'),
  );
  t.is(bytes.readUInt32LE(0), crc32(bytes.subarray(4)) >>> 0);
  t.true(ubootEnvCrcIsValid(bytes));
});

test('matches what U-Boot 2023.01 exported for the same variables', (t) => {
  // Recorded from Debian's qemu_arm64 U-Boot under QEMU: the variables in its environment, then
  // `env export -c -s 0x1000 ADDR <names> nonexistent` and fatwrite (ab_try, empty, was never set).
  const vars = {
    zeta: 'last',
    ab_seq: '7',
    Ab: 'upper',
    ab_slot: 'a',
    ab_: 'x',
    ab_try: '',
    'a.b': 'dot',
    sp: 'a b  c',
    utf: 'é',
    _u: 'under',
  };
  const uboot = Buffer.alloc(SIZE);
  uboot.writeUInt32LE(0xc6992b50, 0);
  Buffer.from(
    'Ab=upper\0_u=under\0a.b=dot\0ab_=x\0ab_seq=7\0ab_slot=a\0sp=a b  c\0utf=é\0zeta=last\0',
  ).copy(uboot, 4);
  t.deepEqual(encodeUbootEnv(vars, SIZE), uboot);
});

test('an empty value means unset, as in U-Boot: it is left out', (t) => {
  t.deepEqual(encodeUbootEnv({ b: '', a: '1' }, SIZE), block('a=1\0'));
  t.deepEqual(encodeUbootEnv({}, SIZE), block(''));
});

test('decoding gives back what was encoded', (t) => {
  const vars = {
    ab_seq: '12',
    bootcmd: 'run a; run b',
    spaces: ' lead and trail ',
    sym: '=&|"\'$',
  };
  t.deepEqual(decodeUbootEnv(encodeUbootEnv(vars, SIZE)), vars);
});

test('names and values that U-Boot or the Linux tools would change are refused', (t) => {
  const refuses = (vars: Record<string, string>, code: string, message: RegExp) =>
    t.throws(() => encodeUbootEnv(vars, SIZE), { instanceOf: UbootEnvError, message }, code)
      .code === code;
  t.true(refuses({ '': 'x' }, 'ENV_BAD_NAME', /is empty/));
  t.true(refuses({ 'a=b': 'x' }, 'ENV_BAD_NAME', /contains '='/));
  t.true(refuses({ ' a': 'x' }, 'ENV_BAD_NAME', /starts with a blank/));
  t.true(refuses({ '#a': 'x' }, 'ENV_BAD_NAME', /starts with a blank or '#'/));
  t.true(refuses({ 'a\nb': 'x' }, 'ENV_BAD_NAME', /newline/));
  t.true(refuses({ a: 'x\0y' }, 'ENV_BAD_VALUE', /NUL/));
  t.true(refuses({ a: 'x\ny' }, 'ENV_BAD_VALUE', /newline/));
  t.true(refuses({ a: 'x\\y' }, 'ENV_BAD_VALUE', /backslash/));
  const badSize = t.throws(() => encodeUbootEnv({}, 4), {
    instanceOf: UbootEnvError,
    message: /size 4/,
  });
  t.is(badSize?.code, 'ENV_BAD_SIZE');
});

test('a full environment fits to the last byte; one more byte is refused', (t) => {
  const room = SIZE - 4 - 1; // the CRC, and the empty entry that ends the list
  const full = { v: 'x'.repeat(room - 'v=\0'.length) };
  const bytes = encodeUbootEnv(full, SIZE);
  t.is(bytes[SIZE - 1], 0);
  t.is(bytes[SIZE - 2], 0);
  t.deepEqual(decodeUbootEnv(bytes), full);
  const error = t.throws(() => encodeUbootEnv({ v: `${full.v}x` }, SIZE), {
    instanceOf: UbootEnvError,
  });
  t.is(error?.code, 'ENV_TOO_BIG');
  t.regex(error?.message ?? '', /needs 4093 bytes but a 4096-byte block holds 4092/);
});

test('a bad CRC or a block too short is a typed error', (t) => {
  const bytes = encodeUbootEnv({ a: '1' }, SIZE);
  bytes.writeUInt8(bytes.readUInt8(100) ^ 1, 100);
  t.false(ubootEnvCrcIsValid(bytes));
  const bad = t.throws(() => decodeUbootEnv(bytes), {
    instanceOf: UbootEnvError,
    message: /CRC32 is 0x/,
  });
  t.is(bad?.code, 'ENV_BAD_CRC');
  t.is(
    t.throws(() => decodeUbootEnv(Buffer.alloc(4)), { instanceOf: UbootEnvError })?.code,
    'ENV_TOO_SHORT',
  );
  t.is(
    t.throws(() => decodeUbootEnv(Buffer.alloc(SIZE)), { instanceOf: UbootEnvError })?.code,
    'ENV_BAD_CRC',
  );
});

test('decoding follows himport_r: stop at the empty entry, "name=" unsets, later wins', (t) => {
  // U-Boot's own fw_setenv leaves stale bytes after the end when it deletes a variable.
  t.deepEqual(decodeUbootEnv(block('a=1\0gone=x\0gone=\0a=2\0bare\0\0stale=1\0')), { a: '2' });
  t.deepEqual(decodeUbootEnv(block('')), {});
  t.deepEqual(decodeUbootEnv(block('\t  lead=1\0#comment=1\0x=1')), { lead: '1', x: '1' });
});

test('decoding unescapes backslashes as U-Boot import does', (t) => {
  t.deepEqual(decodeUbootEnv(block('bs=a\\\\b\0bt=a\\b\0end=z\\\0')), {
    bs: 'a\\b',
    bt: 'ab',
    end: 'z\\',
  });
});

test('an entry with an empty name fails the whole block, as in U-Boot', (t) => {
  const error = t.throws(() => decodeUbootEnv(block('a=1\0=orphan\0')), {
    instanceOf: UbootEnvError,
  });
  t.is(error?.code, 'ENV_MALFORMED');
});
