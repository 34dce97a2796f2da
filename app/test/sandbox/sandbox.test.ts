import test from 'ava';
import fs, {
  mkdirSync,
  mkdtempSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import type { UpdateServerClient } from '../../src/ota/update-server-client.js';
import { ModuleRegistry } from '../../src/sandbox/module-registry.js';
import { SensorAccess } from '../../src/sandbox/sensor-access.js';
import { UplinkSender, type UplinkSink } from '../../src/sandbox/uplink-sender.js';
import { EdgeError } from '../../src/sandbox/wasm-abi.js';
import { testConfig, testServer } from '../helpers.js';
import {
  failsWith,
  guestWat,
  manifestFor,
  memoryLog,
  testRegistry,
  wat,
} from './sandbox-helpers.js';

// The module sandbox on its own, then its API over HTTP (the last section): every module in its
// own worker, each test with its own registry. The malicious modules must leave the registry and
// its other modules serving.

const bytes = (text: string | Uint8Array) =>
  ({
    kind: 'bytes',
    bytes: typeof text === 'string' ? new TextEncoder().encode(text) : text,
  }) as const;
const args = (...values: number[]) => ({ kind: 'args', args: values }) as const;
const guest = wat(guestWat());
const scratch = mkdtempSync(join(tmpdir(), 'edge-sandbox-'));
test.after.always(() => rmSync(scratch, { recursive: true, force: true }));

test('a module loads in its own worker and its exports are called', async (t) => {
  const registry = testRegistry();
  t.teardown(() => registry.close());
  const info = await registry.install(manifestFor('adder', guest), guest);
  t.like(info, { name: 'adder', state: 'running', memoryMaxBytes: 2 * 65536, source: 'api' });
  t.deepEqual(
    info.exports.find((e) => e.name === 'add'),
    {
      name: 'add',
      params: ['i32', 'i32'],
      results: ['i32'],
    },
  );
  t.like(await registry.call('adder', 'add', args(40, 2)), { value: 42 });
  t.like(await registry.call('adder', 'wide', { kind: 'args', args: ['9007199254740993'] }), {
    value: '18014398509481986',
  });
  await failsWith(t, registry.call('adder', 'add', args(1)), 'BAD_CALL');
  await failsWith(t, registry.call('adder', 'nope', args()), 'EXPORT_NOT_FOUND');
  await failsWith(t, registry.call('other', 'add', args(1, 2)), 'MODULE_NOT_FOUND');
});

test('refused at load: malformed binary, no memory maximum, huge table, unknown import, bad hash', async (t) => {
  const registry = testRegistry();
  t.teardown(() => registry.close());
  const refuse = async (wasm: Uint8Array, pattern: RegExp, overrides = {}) => {
    const error = await failsWith(
      t,
      registry.install(manifestFor('bad', wasm, overrides), wasm),
      'MODULE_REFUSED',
    );
    t.regex(error?.message ?? '', pattern);
  };
  await refuse(new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 5, 99]), /malformed binary/);
  await refuse(new TextEncoder().encode('MZ not wasm'), /not a WebAssembly binary/);
  await refuse(wat('(module (memory (export "memory") 1))'), /declares no maximum/);
  await refuse(wat('(module (memory (export "memory") 1 65536))'), /over quotas\.memoryBytes/);
  await refuse(wat('(module (memory 1 1))'), /export it as "memory"/);
  await refuse(
    wat('(module (memory (export "memory") 1 1) (table 10000000 funcref))'),
    /table of 10000000\.\.unbounded/,
  );
  await refuse(
    wat('(module (import "env" "system" (func (param i32))) (memory (export "memory") 1 1))'),
    /imports env\.system, which the host does not provide/,
  );
  await refuse(
    wat('(module (import "env" "edge_log" (func (param i64))) (memory (export "memory") 1 1))'),
    /imports env\.edge_log as \(i64\) -> \(\)/,
  );
  await refuse(
    wat(
      '(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32))) (memory (export "memory") 1 1))',
    ),
    /"wasi": true/,
  );
  await refuse(guest, /sha256 mismatch/, { sha256: '0'.repeat(64) });
  await refuse(guest, /quotas\.cpuMsPerCall 5000 is over the device's ceiling 1000/, {
    quotas: { cpuMsPerCall: 5000 },
  });
  await refuse(guest, /name: must match pattern/, { name: '../etc' });
  t.deepEqual(registry.list(), []);
});

test('an infinite loop is stopped by the watchdog; the module restarts, then is marked failed', async (t) => {
  const registry = testRegistry({ maxFailures: 2 });
  t.teardown(() => registry.close());
  const quotas = { cpuMsPerCall: 50, memoryBytes: 1 << 20 };
  await registry.install(manifestFor('looper', guest, { quotas }), guest);
  await registry.install(manifestFor('bystander', guest), guest);
  const started = performance.now();
  await failsWith(t, registry.call('looper', 'spin', args()), 'MODULE_CPU_QUOTA');
  t.true(performance.now() - started < 1000, 'stopped near its quota');
  t.like(await registry.call('bystander', 'add', args(1, 2)), { value: 3 });
  // Calls queue while it restarts, then run on the new worker.
  t.like(await registry.call('looper', 'add', args(2, 2)), { value: 4 });
  t.like(registry.info('looper'), { restarts: 1, state: 'running' });
  // A success resets the count: two failures in a row now mark it failed.
  await failsWith(t, registry.call('looper', 'spin', args()), 'MODULE_CPU_QUOTA');
  await failsWith(t, registry.call('looper', 'spin', args()), 'MODULE_CPU_QUOTA');
  t.like(registry.info('looper'), { state: 'failed' });
  await failsWith(t, registry.call('looper', 'add', args(1, 1)), 'MODULE_FAILED');
  t.like(await registry.call('bystander', 'add', args(1, 2)), { value: 3 });
  const metrics = new Registry();
  registry.metrics.registerIn(metrics);
  const text = await metrics.metrics();
  t.regex(text, /edge_module_quota_refusals_total\{module="looper",quota="cpu"\} 3/);
  t.regex(text, /edge_module_restarts_total\{module="looper"\} 2/);
});

test('a memory.grow bomb stops at the declared maximum; deep recursion and traps are contained', async (t) => {
  const registry = testRegistry();
  t.teardown(() => registry.close());
  const quotas = { cpuMsPerCall: 1000, memoryBytes: 1 << 20 };
  await registry.install(manifestFor('bomb', guest, { quotas }), guest);
  t.like(
    await registry.call('bomb', 'grow_bomb', args()),
    { value: 1 },
    'one page up to the maximum of 2',
  );
  t.like(registry.info('bomb'), { memoryBytes: 2 * 65536 });
  await failsWith(t, registry.call('bomb', 'recurse', args(0)), 'MODULE_TRAP', /call stack/);
  await failsWith(t, registry.call('bomb', 'trap', args()), 'MODULE_TRAP', /unreachable/);
  t.like(await registry.call('bomb', 'add', args(2, 3)), { value: 5 }, 'still serving');
  t.like(registry.info('bomb'), { restarts: 0, state: 'running' });
});

test('edge_log: UTF-8 only, at most 1024 bytes, pointers inside memory, rate-limited', async (t) => {
  const registry = testRegistry();
  t.teardown(() => registry.close());
  await registry.install(manifestFor('logger', guest, { quotas: { cpuMsPerCall: 1000 } }), guest);
  t.like(await registry.call('logger', 'log', bytes('héllo')), { value: 0 });
  t.like(await registry.call('logger', 'log', bytes(new Uint8Array([0x68, 0xff, 0xfe]))), {
    value: EdgeError.EUTF8,
  });
  t.like(await registry.call('logger', 'log', bytes('x'.repeat(1025))), {
    value: EdgeError.ETOOBIG,
  });
  t.like(await registry.call('logger', 'log_level', args(7)), { value: EdgeError.EINVAL });
  for (const [ptr, len] of [
    [131072, 1],
    [131000, 1000],
    [-1, 4],
    [0, -1],
    [2147483647, 2147483647],
  ] as const) {
    t.like(await registry.call('logger', 'sensor_into', args(ptr, len)), {
      value: EdgeError.EDENIED,
    });
    // "log" takes (ptr, len): the same pointers through the args path.
    t.like(
      await registry.call('logger', 'log', args(ptr, len)),
      { value: EdgeError.EINVAL },
      `${ptr}, ${len}`,
    );
  }
  const flood = await registry.call('logger', 'flood', args(20_000));
  t.true((flood.value as number) > 19_000, `refused ${flood.value} of 20000`);
  t.like(await registry.call('logger', 'add', args(1, 1)), { value: 2 });
  const said = registry.log.lines.filter((line) => line.message !== 'module loaded');
  t.is(said[0]?.message, 'héllo');
  t.true(said.length < 500, `the flood did not reach the log (${said.length} lines)`);
});

test('uplinks: a module that floods keeps a quarter of the queue, and the others take turns with it', async (t) => {
  const posted: string[] = [];
  const client = {
    signedPost: async (_path: string, body: { module: string }) => {
      posted.push(body.module);
    },
  } as unknown as UpdateServerClient;
  const sender = new UplinkSender(async () => ({ client, board: 'qemu' }), 8);
  const dropped = new Map<string, number>();
  sender.onOutcome = (module, outcome) => {
    if (outcome === 'dropped') dropped.set(module, (dropped.get(module) ?? 0) + 1);
  };
  // The first uplink goes out at once; 2 more of the flood wait (8 / 4), the other 7 are dropped.
  for (let i = 0; i < 10; i++) sender.send('flood', '{}');
  sender.send('quiet', '{}');
  sender.send('quiet', '{}');
  await sender.idle();
  t.deepEqual(posted, ['flood', 'flood', 'quiet', 'flood', 'quiet']);
  t.deepEqual(Object.fromEntries(dropped), { flood: 7 });
});

test('module log lines share a device budget; drops are counted, and reported in one line per second', async (t) => {
  // An update server that never answers: one uplink waits, two queue, the rest are dropped.
  const uplink = new UplinkSender(() => new Promise(() => {}), 2, 2);
  const registry = testRegistry({ maxLogLinesPerSecond: 10 }, { uplink });
  t.teardown(() => registry.close());
  const capabilities = { log: true, uplink: { schema: { type: 'object' } } };
  const quotas = { cpuMsPerCall: 1000, hostCallsPerSecond: 1000 };
  await registry.install(manifestFor('chatty', guest, { capabilities, quotas }), guest);
  t.like(await registry.call('chatty', 'flood', args(200)), { value: 0 }, 'within its own quota');
  for (let i = 0; i < 10; i++) {
    t.like(await registry.call('chatty', 'uplink', bytes('{}')), { value: 0 });
  }
  const logged = registry.log.lines.filter((line) => line.message === '').length;
  t.true(logged >= 10 && logged < 20, `${logged} of 200 lines logged`);
  const metrics = new Registry();
  registry.metrics.registerIn(metrics);
  const text = await metrics.metrics();
  const dropped = Number(/edge_module_log_dropped_total\{module="chatty"\} (\d+)/.exec(text)?.[1]);
  t.is(dropped, 200 - logged);
  t.regex(text, /edge_module_uplinks_total\{module="chatty",outcome="dropped"\} 7/);
  await registry.close();
  const reported = (what: string) =>
    registry.log.lines
      .map((line) =>
        new RegExp(`^module chatty: (\\d+) ${what} dropped in the last second`).exec(line.message),
      )
      .filter((match) => match !== null)
      .map((match) => Number(match[1]));
  const lines = reported('log lines');
  const uplinks = reported('uplinks');
  t.true(
    lines.length <= 2 && uplinks.length <= 2,
    'one line per second of drops, not one per drop',
  );
  t.is(
    lines.reduce((sum, n) => sum + n, 0),
    dropped,
  );
  t.is(
    uplinks.reduce((sum, n) => sum + n, 0),
    7,
  );
  t.is(registry.log.lines.length, logged + lines.length + uplinks.length + 1, '+ "module loaded"');
});

test('get_sensor: whitelists, "..", symlink escapes and bounded reads', async (t) => {
  const root = join(scratch, 'sysfs');
  const hwmon = join(root, 'sys/class/hwmon/hwmon0');
  mkdirSync(hwmon, { recursive: true });
  mkdirSync(join(root, 'secret'), { recursive: true });
  writeFileSync(join(hwmon, 'temp1_input'), '42000\n');
  writeFileSync(join(hwmon, 'temp2_input'), '43000\n');
  writeFileSync(join(root, 'secret/key'), 'do not read');
  writeFileSync(join(scratch, 'outside'), 'outside the root');
  symlinkSync(join(root, 'secret/key'), join(hwmon, 'temp3_input'));
  symlinkSync(join(scratch, 'outside'), join(hwmon, 'temp4_input'));
  mkdirSync(join(hwmon, 'dir'));
  const registry = testRegistry({ sensorRoot: root, sensorAllow: ['/sys/class/hwmon'] });
  t.teardown(() => registry.close());
  const capabilities = { log: true, sensors: ['/sys/class/hwmon/hwmon0', '/secret'] };
  await registry.install(manifestFor('sensors', guest, { capabilities }), guest);
  const read = async (path: string) =>
    (await registry.call('sensors', 'sensor', bytes(path))).value;
  t.is(await read('/sys/class/hwmon/hwmon0/temp1_input'), 6);
  t.like(await registry.call('sensors', 'byte', args(0)), { value: '4'.charCodeAt(0) });
  t.is(await read('/secret/key'), EdgeError.EDENIED, 'the module may, the device may not');
  t.is(await read('/sys/class/hwmon/hwmon0/../../../../secret/key'), EdgeError.EDENIED);
  t.is(await read('/sys/class/hwmon/hwmon0/./temp1_input'), EdgeError.EDENIED);
  t.is(await read('/sys/class/hwmon/hwmon0//temp1_input'), EdgeError.EDENIED);
  t.is(await read('sys/class/hwmon/hwmon0/temp1_input'), EdgeError.EDENIED);
  t.is(
    await read('/sys/class/hwmon/hwmon0/temp3_input'),
    EdgeError.EDENIED,
    'symlink out of the whitelist',
  );
  t.is(
    await read('/sys/class/hwmon/hwmon0/temp4_input'),
    EdgeError.EDENIED,
    'symlink out of the root',
  );
  t.is(await read('/sys/class/hwmon/hwmon0/dir'), EdgeError.EIO);
  t.is(await read('/sys/class/hwmon/hwmon0/none'), EdgeError.EIO);
  t.is(await read(`/sys/class/hwmon/hwmon0/${'a'.repeat(300)}`), EdgeError.ETOOBIG);
  t.like(await registry.call('sensors', 'sensor', bytes(new Uint8Array([0x2f, 0xc3]))), {
    value: EdgeError.EUTF8,
  });
  // Another module without the capability.
  await registry.install(manifestFor('blind', guest), guest);
  t.like(await registry.call('blind', 'sensor', bytes('/sys/class/hwmon/hwmon0/temp1_input')), {
    value: EdgeError.EDENIED,
  });
});

test('get_sensor: sysfs class folders are links into /sys/devices; one link is followed, no further', (t) => {
  // The layout of a real sysfs: /sys/class/* entries are links to the device's folder.
  const root = join(scratch, 'real-sysfs');
  const zone = join(root, 'sys/devices/virtual/thermal/thermal_zone0');
  mkdirSync(join(zone, 'hwmon0'), { recursive: true });
  mkdirSync(join(root, 'sys/class/hwmon'), { recursive: true });
  mkdirSync(join(root, 'sys/class/thermal'), { recursive: true });
  mkdirSync(join(root, 'secret'));
  writeFileSync(join(zone, 'temp'), '41000\n');
  writeFileSync(join(zone, 'hwmon0/temp1_input'), '42000\n');
  writeFileSync(join(root, 'secret/key'), 'SECRET');
  symlinkSync(
    '../../devices/virtual/thermal/thermal_zone0/hwmon0',
    join(root, 'sys/class/hwmon/hwmon0'),
  );
  symlinkSync(
    '../../devices/virtual/thermal/thermal_zone0',
    join(root, 'sys/class/thermal/thermal_zone0'),
  );
  symlinkSync('../../thermal_zone0', join(zone, 'hwmon0/device'));
  symlinkSync(join(root, 'secret/key'), join(zone, 'hwmon0/leak'));
  const device = testConfig().modules.sensorAllow;
  const read = (moduleAllow: string[], path: string) =>
    new SensorAccess(root, moduleAllow, device).read(path, new Uint8Array(64));

  t.deepEqual(device, ['/sys/class/hwmon', '/sys/class/thermal'], 'no /sys/devices');
  const temp1 = '/sys/class/hwmon/hwmon0/temp1_input';
  t.is(read([temp1], temp1), 6, 'the file a module names, through the class link');
  t.is(read(['/sys/class/hwmon'], temp1), 6);
  t.is(read(['/sys/class/hwmon/hwmon0'], temp1), 6);
  t.is(read(['/sys/class/thermal'], '/sys/class/thermal/thermal_zone0/temp'), 6);
  // A second link (hwmon0/device), a planted file link, or the device folder named directly.
  t.is(read(['/sys/class/hwmon'], '/sys/class/hwmon/hwmon0/device/temp'), EdgeError.EDENIED);
  t.is(read(['/sys/class/hwmon/hwmon0'], '/sys/class/hwmon/hwmon0/device/temp'), EdgeError.EDENIED);
  t.is(read(['/sys/class/hwmon/hwmon0'], '/sys/class/hwmon/hwmon0/leak'), EdgeError.EDENIED);
  t.is(read(['/sys/class/hwmon'], '/sys/class/hwmon/hwmon0/leak'), EdgeError.EDENIED);
  t.is(
    read(['/sys/devices'], '/sys/devices/virtual/thermal/thermal_zone0/temp'),
    EdgeError.EDENIED,
  );
});

test('get_sensor: a folder swapped for a link between realpath and open is refused, not read through', (t) => {
  const root = join(scratch, 'swapped');
  mkdirSync(join(root, 'sys/hwmon'), { recursive: true });
  mkdirSync(join(root, 'secret'));
  writeFileSync(join(root, 'sys/hwmon/temp'), '42000\n');
  writeFileSync(join(root, 'secret/temp'), 'SECRET');
  const access = new SensorAccess(root, ['/sys/hwmon'], ['/sys']);
  const into = new Uint8Array(64);
  t.is(access.read('/sys/hwmon/temp', into), 6);
  // The race made certain: the folder becomes a link right after realpath checked the path.
  // Synchronous from patch to restore, so no other test meets the patched realpathSync.
  const realpathSync = fs.realpathSync;
  fs.realpathSync = ((path: string) => {
    const real = realpathSync(path);
    if (path.endsWith('/sys/hwmon/temp')) {
      renameSync(join(root, 'sys/hwmon'), join(root, 'sys/hwmon.old'));
      symlinkSync(join(root, 'secret'), join(root, 'sys/hwmon'));
    }
    return real;
  }) as typeof fs.realpathSync;
  syncBuiltinESMExports();
  let count: number;
  try {
    count = access.read('/sys/hwmon/temp', into.fill(0));
  } finally {
    fs.realpathSync = realpathSync;
    syncBuiltinESMExports();
  }
  t.is(count, EdgeError.EDENIED);
  t.false(Buffer.from(into).toString().includes('SECRET'));
});

test('post_uplink: JSON passing the module schema goes to the sink; the rest is refused', async (t) => {
  const sent: Array<[string, string]> = [];
  const uplink: UplinkSink = { send: (module, payload) => sent.push([module, payload]) };
  const registry = testRegistry({}, { uplink });
  t.teardown(() => registry.close());
  // An $id: the second load of this schema (below) must not clash with the first.
  const schema = {
    $id: 'https://example.com/reading.json',
    type: 'object',
    properties: { temperature: { type: 'number' } },
    required: ['temperature'],
    additionalProperties: false,
  };
  await registry.install(
    manifestFor('reporter', guest, { capabilities: { uplink: { schema } } }),
    guest,
  );
  const post = async (text: string) =>
    (await registry.call('reporter', 'uplink', bytes(text))).value;
  t.is(await post('{"temperature": 41.5}'), 0);
  t.is(await post('{"temperature": "hot"}'), EdgeError.ESCHEMA);
  t.is(await post('{"temperature": 1, "extra": true}'), EdgeError.ESCHEMA);
  t.is(await post('{"temperature": '), EdgeError.ESCHEMA);
  t.is(await post(`{"temperature": 1, "pad": "${'x'.repeat(17000)}"}`), EdgeError.ETOOBIG);
  t.deepEqual(sent, [['reporter', '{"temperature": 41.5}']]);
  await registry.install(manifestFor('mute', guest), guest);
  t.like(await registry.call('mute', 'uplink', bytes('{}')), { value: EdgeError.EDENIED });
  const unconfigured = testRegistry();
  t.teardown(() => unconfigured.close());
  await unconfigured.install(
    manifestFor('reporter', guest, { capabilities: { uplink: { schema } } }),
    guest,
  );
  t.like(await unconfigured.call('reporter', 'uplink', bytes('{"temperature": 1}')), {
    value: EdgeError.EIO,
  });
  const badSchema = manifestFor('odd', guest, {
    capabilities: { uplink: { schema: { type: 'wat' } } },
  });
  await failsWith(t, registry.install(badSchema, guest), 'MODULE_REFUSED', /uplink\.schema/);
});

test('a replacement swaps atomically: calls in flight finish on the old one; a failed one changes nothing', async (t) => {
  const registry = testRegistry();
  t.teardown(() => registry.close());
  const v1 = wat(guestWat({ version: 1 }));
  const v2 = wat(guestWat({ version: 2 }));
  const broken = wat(guestWat({ version: 3, init: '(unreachable)' }));
  await registry.install(manifestFor('swap', v1, { quotas: { cpuMsPerCall: 1000 } }), v1);
  const inFlight = registry.call('swap', 'busy', args(2_000_000));
  const queued = registry.call('swap', 'version', args());
  const replaced = await registry.install(manifestFor('swap', v2, { version: '2.0.0' }), v2);
  t.like(replaced, { version: '2.0.0' });
  t.like(await registry.call('swap', 'version', args()), { value: 2 });
  t.like(await inFlight, { value: 1 });
  t.like(await queued, { value: 1 });
  await failsWith(
    t,
    registry.install(manifestFor('swap', broken, { version: '3.0.0' }), broken),
    'MODULE_START_FAILED',
    /unreachable/,
  );
  t.like(registry.info('swap'), { version: '2.0.0', state: 'running' });
  t.like(await registry.call('swap', 'version', args()), { value: 2 });
  t.is(registry.compiledModules, 1, "only v2's compiled code is kept, not v1's nor v3's");
  t.true(await registry.remove('swap'));
  t.is(registry.compiledModules, 0);
  await failsWith(t, registry.call('swap', 'version', args()), 'MODULE_NOT_FOUND');
});

test('modules load from the folder; a reload applies changes and removals; no folder is no modules', async (t) => {
  const dir = join(scratch, 'modules');
  const put = (name: string, wasm: Uint8Array, overrides = {}) => {
    mkdirSync(join(dir, name), { recursive: true });
    writeFileSync(join(dir, name, `${name}.wasm`), wasm);
    writeFileSync(
      join(dir, name, 'manifest.json'),
      JSON.stringify(manifestFor(name, wasm, overrides)),
    );
  };
  const registry = testRegistry({ dir });
  t.teardown(() => registry.close());
  t.deepEqual(await registry.reloadFromDirectory(), {
    loaded: [],
    unchanged: [],
    removed: [],
    refused: [],
  });
  put('one', guest);
  put('two', guest);
  put('broken', wat('(module (memory (export "memory") 1))'));
  const first = await registry.reloadFromDirectory();
  t.deepEqual(first.loaded, ['one', 'two']);
  t.is(first.refused[0]?.name, 'broken');
  t.regex(first.refused[0]?.reason ?? '', /no maximum/);
  rmSync(join(dir, 'two'), { recursive: true });
  rmSync(join(dir, 'broken'), { recursive: true });
  const v2 = wat(guestWat({ version: 2 }));
  put('one', v2);
  t.deepEqual(await registry.reloadFromDirectory(), {
    loaded: ['one'],
    unchanged: [],
    removed: ['two'],
    refused: [],
  });
  t.like(await registry.call('one', 'version', args()), { value: 2 });
  t.deepEqual((await registry.reloadFromDirectory()).unchanged, ['one']);
  // A release may change only the manifest (a quota, a capability): the same binary reloads.
  put('one', v2, { quotas: { cpuMsPerCall: 500 } });
  t.deepEqual((await registry.reloadFromDirectory()).loaded, ['one']);
  t.like(registry.info('one'), { quotas: { cpuMsPerCall: 500 } });
});

test('modules are refused, saying why, when the address space has no room for another wasm memory', async (t) => {
  const registry = testRegistry(
    {},
    {
      addressSpace: () => ({
        limitBytes: 8 * 1024 ** 3,
        limitSource: 'RLIMIT_AS (ulimit -v) 8589934592 bytes',
        usedBytes: 1024 ** 3,
      }),
    },
  );
  t.teardown(() => registry.close());
  const error = await failsWith(
    t,
    registry.install(manifestFor('big', guest), guest),
    'MODULE_NO_ROOM',
  );
  t.regex(
    error?.message ?? '',
    /V8 reserves about 10\.0 GiB per memory, and 7\.0 GiB of the RLIMIT_AS/,
  );
  const few = testRegistry({ maxModules: 1 });
  t.teardown(() => few.close());
  await few.install(manifestFor('first', guest), guest);
  await failsWith(
    t,
    few.install(manifestFor('second', guest), guest),
    'MODULE_NO_ROOM',
    /modules\.maxModules/,
  );
});

test('a WASI module runs with an in-memory file system; its stdout goes to the log, invalid UTF-8 as U+FFFD', async (t) => {
  const registry = testRegistry();
  t.teardown(() => registry.close());
  const wasm = wat(`(module
    (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
    (memory (export "memory") 1 1)
    (data (i32.const 16) "hello from wasi\\n")
    (func $hello (export "hello") (result i32)
      (i32.store (i32.const 0) (i32.const 16))
      (i32.store (i32.const 4) (i32.const 16))
      (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (func (export "hello_twice") (result i32) (drop (call $hello)) (call $hello))
    (data (i32.const 48) "h\\ff\\n")
    (func (export "not_utf8") (result i32)
      (i32.store (i32.const 0) (i32.const 48))
      (i32.store (i32.const 4) (i32.const 3))
      (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))`);
  await registry.install(manifestFor('wasi-hello', wasm, { wasi: true }), wasm);
  t.like(await registry.call('wasi-hello', 'hello', args()), { value: 0 });
  t.true(registry.log.lines.some((line) => line.message === 'hello from wasi\n'));
  // Invalid UTF-8 on stdout is logged with U+FFFD, not a crash of the worker.
  t.like(await registry.call('wasi-hello', 'not_utf8', args()), { value: 0 });
  t.true(registry.log.lines.some((line) => line.message === 'h\uFFFD\n'));
  t.like(registry.info('wasi-hello'), { restarts: 0, state: 'running' });
  // WASI writes spend the byte quota as host functions do: the second 16 bytes wait (EAGAIN).
  const quotas = { cpuMsPerCall: 1000, ioBytesPerSecond: 16 };
  await registry.install(manifestFor('wasi-quota', wasm, { wasi: true, quotas }), wasm);
  t.like(await registry.call('wasi-quota', 'hello_twice', args()), { value: 6 });
});

test('a WASI module cannot grow its in-memory files past quotas.memoryBytes', async (t) => {
  const registry = testRegistry();
  t.teardown(() => registry.close());
  const preview1 = (name: string, params: string) =>
    `(import "wasi_snapshot_preview1" "${name}" (func $${name} (param ${params}) (result i32)))`;
  const wasm = wat(`(module
    ${preview1('path_open', 'i32 i32 i32 i32 i32 i64 i64 i32 i32')}
    ${preview1('fd_filestat_set_size', 'i32 i64')}
    ${preview1('fd_allocate', 'i32 i64 i64')}
    ${preview1('fd_seek', 'i32 i64 i32 i32')}
    ${preview1('fd_pwrite', 'i32 i32 i32 i64 i32')}
    (memory (export "memory") 1 1)
    (data (i32.const 100) "a")
    ;; Creates the file named by the byte at 100 in the pre-opened "/" (fd 3): its fd, or -errno.
    (func $open (export "open") (result i32) (local $errno i32)
      (local.set $errno (call $path_open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 1)
        (i32.const 1) (i64.const -1) (i64.const -1) (i32.const 0) (i32.const 200)))
      (if (result i32) (local.get $errno)
        (then (i32.sub (i32.const 0) (local.get $errno))) (else (i32.load (i32.const 200)))))
    (func (export "set_size") (param i32 i64) (result i32)
      (call $fd_filestat_set_size (local.get 0) (local.get 1)))
    (func (export "allocate") (param i32 i64 i64) (result i32)
      (call $fd_allocate (local.get 0) (local.get 1) (local.get 2)))
    (func (export "seek") (param i32 i64 i32) (result i32)
      (call $fd_seek (local.get 0) (local.get 1) (local.get 2) (i32.const 300)))
    (func (export "position") (result i64) (i64.load (i32.const 300)))
    (func (export "pwrite") (param i32 i64) (result i32)
      (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 1))
      (call $fd_pwrite (local.get 0) (i32.const 0) (i32.const 1) (local.get 1) (i32.const 8)))
    ;; 64 files of $size bytes each: the number made.
    (func (export "fill") (param $size i64) (result i32) (local $made i32)
      (block $done (loop $next
        (i32.store8 (i32.const 100) (i32.add (i32.const 98) (local.get $made)))
        (br_if $done (i32.ne (call $fd_filestat_set_size (call $open) (local.get $size)) (i32.const 0)))
        (local.set $made (i32.add (local.get $made) (i32.const 1)))
        (br_if $next (i32.lt_u (local.get $made) (i32.const 64)))))
      (local.get $made)))`);
  const limit = 1 << 20;
  const quotas = { cpuMsPerCall: 1000, memoryBytes: limit };
  await registry.install(manifestFor('wasi-fs', wasm, { wasi: true, quotas }), wasm);
  const call = async (name: string, ...values: Array<number | string>) =>
    (await registry.call('wasi-fs', name, { kind: 'args', args: values })).value;
  const fd = (await call('open')) as number;
  t.true(fd >= 3, `fd ${fd}`);
  const EFBIG = 22;
  const over = String(limit + 1);
  t.is(await call('set_size', fd, over), EFBIG);
  t.is(await call('set_size', fd, '-1'), EFBIG, 'a u64: -1 is 2^64 - 1');
  t.is(await call('allocate', fd, '0', over), EFBIG);
  t.is(await call('allocate', fd, String(limit), '1'), EFBIG);
  t.is(await call('allocate', fd, '-1', '2'), EFBIG, 'no wrapping around 2^64');
  t.is(await call('pwrite', fd, String(limit)), EFBIG);
  t.is(await call('seek', fd, over, 0), EFBIG);
  t.is(await call('seek', fd, String(limit), 1), 0, 'up to the limit');
  t.is(await call('seek', fd, '1', 1), EFBIG);
  t.is(await call('position'), limit, 'a refused seek leaves the cursor');
  t.is(await call('seek', fd, over, 2), EFBIG);
  t.is(await call('set_size', fd, String(limit / 2)), 0, 'within the quota');
  t.is(await call('set_size', fd, '0'), 0);
  // Many files, each within the limit: the worker is stopped once they take more than it.
  const error = await failsWith(
    t,
    registry.call('wasi-fs', 'fill', args(limit / 2)),
    'MODULE_CRASHED',
    /the WASI file system took \d+ bytes, over its 1048576/,
  );
  const took = Number(/took (\d+) bytes/.exec(error?.message ?? '')?.[1]);
  t.log(`the library memory grew by ${took} bytes`);
  t.true(took <= limit + limit / 2 + 65536, `the library's memory grew by ${took} bytes`);
  t.like(registry.info('wasi-fs'), { restarts: 0, state: 'restarting' });
  t.true(((await call('open')) as number) >= 3, 'restarted with an empty file system');
});

// ---- the module API through fastify's inject ----

// Authentication, load, replace, call, unload, metrics.
const apiDir = mkdtempSync(join(tmpdir(), 'edge-modules-api-'));
test.after.always(() => rmSync(apiDir, { recursive: true, force: true }));

async function serverWithModules(tokenFile: string) {
  const config = testConfig({
    EDGE_MODULES_API_TOKEN_FILE: tokenFile,
    EDGE_MODULES_DIR: join(apiDir, 'none'),
  });
  const app = await testServer({ config });
  app.modules = new ModuleRegistry(config.modules, {
    log: memoryLog(),
    metricsRegistry: app.metricsRegistry,
  });
  return app;
}

const body = (name: string, wasm: Uint8Array, overrides = {}) => ({
  manifest: manifestFor(name, wasm, overrides),
  wasm: Buffer.from(wasm).toString('base64'),
});

test('without a token file, changes are refused with a 403 that names the file', async (t) => {
  const tokenFile = join(apiDir, 'absent-token');
  const app = await serverWithModules(tokenFile);
  t.teardown(async () => {
    await app.modules?.close();
    await app.close();
  });
  const put = await app.inject({
    method: 'PUT',
    url: '/api/v1/modules/adder',
    payload: body('adder', guest),
  });
  t.is(put.statusCode, 403);
  t.like(put.json(), {
    code: 'MODULE_API_LOCKED',
    message: `module changes are refused: no API token file ${tokenFile}`,
  });
  t.is((await app.inject('/api/v1/modules')).statusCode, 200, 'reading needs no token');
});

test('load, call with JSON args and with bytes, replace, unload; metrics at /metrics', async (t) => {
  const tokenFile = join(apiDir, 'token');
  writeFileSync(tokenFile, 'secret-token\n');
  const app = await serverWithModules(tokenFile);
  t.teardown(async () => {
    await app.modules?.close();
    await app.close();
  });
  const auth = { authorization: 'Bearer secret-token' };
  const wrong = await app.inject({
    method: 'PUT',
    url: '/api/v1/modules/adder',
    headers: { authorization: 'Bearer guess' },
    payload: body('adder', guest),
  });
  t.is(wrong.statusCode, 401);
  const created = await app.inject({
    method: 'PUT',
    url: '/api/v1/modules/adder',
    headers: auth,
    payload: body('adder', guest),
  });
  t.is(created.statusCode, 201, created.body);
  t.like(created.json(), { name: 'adder', state: 'running', source: 'api' });
  const refused = await app.inject({
    method: 'PUT',
    url: '/api/v1/modules/adder',
    headers: auth,
    payload: body('adder', wat('(module (memory (export "memory") 1))')),
  });
  t.is(refused.statusCode, 422);
  t.like(refused.json(), { code: 'MODULE_REFUSED' });
  const mismatch = await app.inject({
    method: 'PUT',
    url: '/api/v1/modules/other',
    headers: auth,
    payload: body('adder', guest),
  });
  t.is(mismatch.statusCode, 400);

  const call = await app.inject({
    method: 'POST',
    url: '/api/v1/modules/adder/call/add',
    headers: auth,
    payload: { args: [20, 22] },
  });
  t.is(call.statusCode, 200, call.body);
  t.is(call.json<{ result: unknown }>().result, 42);
  const logged = await app.inject({
    method: 'POST',
    url: '/api/v1/modules/adder/call/log',
    headers: { ...auth, 'content-type': 'application/octet-stream' },
    payload: Buffer.from('from the API'),
  });
  t.is(logged.json<{ result: unknown }>().result, 0, logged.body);
  const trap = await app.inject({
    method: 'POST',
    url: '/api/v1/modules/adder/call/trap',
    headers: auth,
    payload: {},
  });
  t.is(trap.statusCode, 422);
  t.like(trap.json(), { code: 'MODULE_TRAP' });
  const unauthenticatedCall = await app.inject({
    method: 'POST',
    url: '/api/v1/modules/adder/call/add',
    payload: { args: [1, 2] },
  });
  t.is(unauthenticatedCall.statusCode, 401);

  const v2 = wat(guestWat({ version: 2 }));
  const replaced = await app.inject({
    method: 'PUT',
    url: '/api/v1/modules/adder',
    headers: auth,
    payload: body('adder', v2, { version: '2.0.0' }),
  });
  t.is(replaced.statusCode, 200);
  const version = await app.inject({
    method: 'POST',
    url: '/api/v1/modules/adder/call/version',
    headers: auth,
  });
  t.is(version.json<{ result: unknown }>().result, 2, version.body);
  const list = await app.inject('/api/v1/modules');
  t.like(list.json(), { modules: [{ name: 'adder', version: '2.0.0' }] });

  const metrics = await app.inject('/metrics');
  t.regex(metrics.body, /edge_module_calls_total\{module="adder"\} \d+/);
  t.regex(metrics.body, /edge_module_traps_total\{module="adder"\} 1/);

  t.is(
    (await app.inject({ method: 'DELETE', url: '/api/v1/modules/adder', headers: auth }))
      .statusCode,
    204,
  );
  t.is(
    (await app.inject({ method: 'DELETE', url: '/api/v1/modules/adder', headers: auth }))
      .statusCode,
    404,
  );
  t.is((await app.inject('/api/v1/modules/adder')).statusCode, 404);
});
