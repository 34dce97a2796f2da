import test, { type ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { UbootEnvError, decodeUbootEnv, encodeUbootEnv, ubootEnvCrcIsValid } from '@edge/formats';
import { scratchDir } from '../../test/scratch.js';

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

// Both stock tool sets against our codec: libubootenv's (Debian libubootenv-tool, what the
// device and users have) and U-Boot's own tools/env (built by scripts/build-uboot-envtools.sh).

const configTemplate = readFileSync(
  new URL('../../bootloader/uboot-env/fw_env.config', import.meta.url),
  'utf8',
);
const ubootToolsDir =
  process.env.UBOOT_ENVTOOLS_DIR ??
  join(
    process.env.EDGE_CACHE ?? join(homedir(), '.cache', 'edge-firmware'),
    'uboot-envtools',
    'bin',
  );

interface Tools {
  name: string;
  printenv: (config: string, ...args: string[]) => Run;
  setenv: (config: string, ...args: string[]) => Run;
}
interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function run(command: string, args: string[]): Run {
  const result = spawnSync(command, args, { encoding: 'utf8' });
  if (result.error) throw result.error;
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

const libubootenv: Tools = {
  name: 'libubootenv',
  printenv: (config, ...args) => run('/usr/bin/fw_printenv', ['-c', config, ...args]),
  setenv: (config, ...args) => run('/usr/bin/fw_setenv', ['-c', config, ...args]),
};

function ubootEnvtools(dir: string): Tools {
  // -l: its lock file goes beside the test's files, not in /var/lock.
  const lockDir = scratchDir('uboot-envtools-lock');
  return {
    name: 'U-Boot envtools',
    printenv: (config, ...args) =>
      run(join(dir, 'fw_printenv'), ['-l', lockDir, '-c', config, ...args]),
    setenv: (config, ...args) =>
      run(join(dir, 'fw_setenv'), ['-l', lockDir, '-c', config, ...args]),
  };
}

/** An environment file and a config naming it, made from the shipped fw_env.config. */
function envFile(bytes?: Buffer, sizeField?: string) {
  const dir = scratchDir('uboot-env-tools');
  const path = join(dir, 'abstate1.env');
  if (bytes) writeFileSync(path, bytes);
  let configText = configTemplate.replaceAll('/boot/', `${dir}/`);
  if (sizeField) configText = configText.replace(/\t0x1000$/m, `\t${sizeField}`);
  const config = join(dir, 'fw_env.config');
  writeFileSync(config, configText);
  return { path, config, read: () => readFileSync(path) };
}

const lines = (vars: Record<string, string>) =>
  Object.keys(vars)
    .sort()
    .map((name) => `${name}=${vars[name]}\n`)
    .join('');

function toolTests(tools: Tools, register: typeof test | typeof test.skip) {
  const named = (title: string, body: (t: ExecutionContext) => void) =>
    register(`${tools.name}: ${title}`, body);

  named('fw_printenv reads what we write, through the shipped fw_env.config', (t) => {
    const vars = { ab_seq: '3', ab_slot: 'b', bootcmd: 'run a; run b', spaced: ' x  y ', utf: 'é' };
    const file = envFile(encodeUbootEnv(vars, SIZE));
    const printed = tools.printenv(file.config);
    t.is(printed.status, 0, printed.stderr);
    t.is(printed.stdout, lines(vars));
    t.is(tools.printenv(file.config, '-n', 'ab_slot').stdout, 'b\n');
  });

  named('SIZE without 0x is read as hex too', (t) => {
    const vars = { ab_seq: '1' };
    const file = envFile(encodeUbootEnv(vars, SIZE), '1000');
    const printed = tools.printenv(file.config);
    t.is(printed.status, 0, printed.stderr);
    t.is(printed.stdout, lines(vars));
  });

  named('we read what fw_setenv writes, and it keeps the block size', (t) => {
    const file = envFile(encodeUbootEnv({ ab_seq: '1', keep: 'me' }, SIZE));
    for (const [name, value] of [
      ['zz', 'last'],
      ['ab_slot', 'a'],
      ['ab_seq', '2'],
    ] as const) {
      const set = tools.setenv(file.config, name, value);
      t.is(set.status, 0, set.stderr);
    }
    const bytes = file.read();
    t.is(bytes.length, SIZE);
    t.deepEqual(decodeUbootEnv(bytes), { ab_seq: '2', ab_slot: 'a', keep: 'me', zz: 'last' });
  });

  named('a variable deleted with fw_setenv is gone for us too', (t) => {
    const file = envFile(encodeUbootEnv({ a: '1', gone: 'x', z: '2' }, SIZE));
    t.is(tools.setenv(file.config, 'gone').status, 0);
    t.deepEqual(decodeUbootEnv(file.read()), { a: '1', z: '2' });
  });

  named('an empty value from fw_setenv reads as unset, as U-Boot import treats it', (t) => {
    const file = envFile(encodeUbootEnv({ a: '1', empty: 'x' }, SIZE));
    t.is(tools.setenv(file.config, 'empty', '').status, 0);
    const bytes = file.read();
    t.log(
      `${tools.name} stores fw_setenv empty "" as`,
      bytes.includes('empty=\0') ? '"empty=" (kept)' : 'a deletion',
    );
    t.deepEqual(decodeUbootEnv(bytes), { a: '1' });
  });

  named('a full environment: both sides read it, and fw_setenv cannot overfill it', (t) => {
    const full = { ab_seq: '1', v: 'x'.repeat(SIZE - 4 - 1 - 'ab_seq=1\0'.length - 'v=\0'.length) };
    const file = envFile(encodeUbootEnv(full, SIZE));
    const printed = tools.printenv(file.config);
    t.is(printed.status, 0, printed.stderr);
    t.is(printed.stdout, lines(full));
    const before = file.read();
    const set = tools.setenv(file.config, 'more', 'y');
    t.log(
      `${tools.name} fw_setenv on a full environment: exit ${set.status}, ${set.stderr.trim()}`,
    );
    t.deepEqual(decodeUbootEnv(file.read()), full); // refused, or stored without the new variable
    t.true(before.equals(file.read()) || set.status === 0);
  });

  named('a bad CRC: the tools do not show our variables and we refuse the copy', (t) => {
    const bytes = encodeUbootEnv({ ab_seq: '5', ab_slot: 'b' }, SIZE);
    bytes.writeUInt8(bytes.readUInt8(64) ^ 0xff, 64);
    const file = envFile(bytes);
    const printed = tools.printenv(file.config);
    t.log(
      `${tools.name} fw_printenv on a bad CRC: exit ${printed.status}, ${printed.stderr.trim()}`,
    );
    t.notRegex(printed.stdout, /ab_slot/);
    t.regex(printed.stderr, /bad CRC|Cannot read environment/i);
    t.is(
      t.throws(() => decodeUbootEnv(file.read()), { instanceOf: UbootEnvError })?.code,
      'ENV_BAD_CRC',
    );
  });
}

toolTests(libubootenv, test);

test('mkenvimage (u-boot-tools, the image build): unsorted, 0x00 or 0xff padding; we read both', (t) => {
  const dir = scratchDir('uboot-env-mkenvimage');
  writeFileSync(join(dir, 'defaults'), 'ab_seq=1\nab_good=a\nab_tries=0\n');
  for (const pad of [['-p', '0'], []]) {
    const made = run('mkenvimage', [
      ...pad,
      '-s',
      '0x1000',
      '-o',
      join(dir, 'abstate1.env'),
      join(dir, 'defaults'),
    ]);
    t.is(made.status, 0, made.stderr);
    const bytes = readFileSync(join(dir, 'abstate1.env'));
    t.is(bytes[SIZE - 1], pad.length ? 0x00 : 0xff);
    t.deepEqual(decodeUbootEnv(bytes), { ab_seq: '1', ab_good: 'a', ab_tries: '0' });
  }
});

if (existsSync(join(ubootToolsDir, 'fw_printenv'))) {
  const tools = ubootEnvtools(ubootToolsDir);
  toolTests(tools, test);

  test('U-Boot envtools: fw_setenv appends unsorted and leaves stale bytes; we decode and re-sort', (t) => {
    const file = envFile(encodeUbootEnv({ a: '1', m: 'middle', z: '2' }, SIZE));
    t.is(tools.setenv(file.config, 'b', 'new').status, 0);
    t.is(tools.setenv(file.config, 'm').status, 0);
    const data = file.read().subarray(4, 40).toString('latin1');
    t.true(data.startsWith('a=1\0z=2\0b=new\0\0'), JSON.stringify(data));
    t.true(data.slice(15).includes('b=new'), `stale bytes after the end: ${JSON.stringify(data)}`);
    const vars = decodeUbootEnv(file.read());
    t.deepEqual(vars, { a: '1', b: 'new', z: '2' });
    t.deepEqual(decodeUbootEnv(encodeUbootEnv(vars, SIZE)), vars);
  });
} else {
  const message = `U-Boot envtools not found in ${ubootToolsDir}: run scripts/build-uboot-envtools.sh to test against them`;
  test('U-Boot envtools: tests skipped', (t) => {
    t.log(message);
    t.pass();
  });
  toolTests(ubootEnvtools(ubootToolsDir), test.skip);
}
