import test from 'ava';
import { EdgeError } from '../../src/sandbox/wasm-abi.js';
import {
  RecordingHost,
  buildExample,
  checkBuiltModule,
  type BuiltExample,
  type SensorValue,
} from './module-host.js';

// The example modules (app/modules/*) as built, run against a host that records their calls.

let logFilter: BuiltExample;
let sampler: BuiltExample;

test.before(async () => {
  [logFilter, sampler] = await Promise.all([
    buildExample('log-filter'),
    buildExample('sensor-sampler'),
  ]);
});

// ---- log-filter ----

async function filterer() {
  const host = new RecordingHost(logFilter.manifest);
  const instance = await host.instantiate(logFilter.module);
  const exports = instance.exports as Record<string, (...args: number[]) => number>;
  return {
    host,
    filter: (input: Uint8Array | string) => host.callWithInput(instance, 'filter', input),
    setPattern: (pattern: string) => host.callWithInput(instance, 'set_pattern', pattern),
    setMinLevel: (level: number) => exports.set_min_level!(level),
  };
}

const LOG = [
  '2024-05-01T10:00:00Z INFO started',
  '[warn] disk 91% full',
  'DEBUG polling hwmon0',
  'ERROR: sensor hwmon0 timed out\r',
  'plain line',
  '',
  'no errors found, information only',
  'level=error msg="boom"',
  'Warning: fan slow',
].join('\n');

test('the binary imports only edge_log, bounds its memory and matches its manifest', async (t) => {
  await checkBuiltModule(t, logFilter, 'log-filter', ['edge_log']);
  const exported = WebAssembly.Module.exports(logFilter.module).map((entry) => entry.name);
  t.true(
    ['edge_alloc', 'filter', 'set_pattern', 'set_min_level'].every((name) =>
      exported.includes(name),
    ),
  );
});

test('forwards the lines at warn and above, at their own level, and counts them', async (t) => {
  const { host, filter } = await filterer();
  t.is(filter(LOG), 4);
  t.deepEqual(host.logs, [
    { level: 2, text: '[warn] disk 91% full' },
    { level: 3, text: 'ERROR: sensor hwmon0 timed out' },
    { level: 3, text: 'level=error msg="boom"' },
    { level: 2, text: 'Warning: fan slow' },
  ]);
});

test('a lower level and a pattern select other lines', async (t) => {
  const { host, filter, setPattern, setMinLevel } = await filterer();
  t.is(setMinLevel(0), 0);
  t.is(setPattern('hwmon0'), 0);
  t.is(filter(LOG), 2);
  t.deepEqual(host.logs, [
    { level: 0, text: 'DEBUG polling hwmon0' },
    { level: 3, text: 'ERROR: sensor hwmon0 timed out' },
  ]);
  t.is(setMinLevel(4), EdgeError.EINVAL);
  t.is(setMinLevel(-1), EdgeError.EINVAL);
  t.is(setPattern(''), 0);
  t.is(filter(LOG), 8, 'every line with text');
});

test('empty input and blank lines forward nothing', async (t) => {
  const { host, filter } = await filterer();
  t.is(filter(''), 0);
  t.is(filter('\n\r\n\n'), 0);
  t.deepEqual(host.logs, []);
});

test('non-ASCII UTF-8 is forwarded byte for byte, and long lines are cut on a character boundary', async (t) => {
  const { host, filter, setPattern } = await filterer();
  t.is(filter('ERROR température 42 °C ✓ 😀\nWARN naïve\n'), 2);
  t.deepEqual(
    host.logs.map((entry) => entry.text),
    ['ERROR température 42 °C ✓ 😀', 'WARN naïve'],
  );

  host.logs.length = 0;
  t.is(setPattern('é'), 0);
  t.is(filter('ERROR café\nERROR cafe\n'), 1);
  t.deepEqual(host.logs, [{ level: 3, text: 'ERROR café' }]);

  host.logs.length = 0;
  t.is(setPattern(''), 0);
  const long = `ERROR ${'€'.repeat(400)}`; // 6 + 1200 bytes
  t.is(filter(long), 1);
  const forwarded = host.logs[0]!.text;
  t.true(long.startsWith(forwarded));
  t.is(
    Buffer.byteLength(forwarded),
    6 + 339 * 3,
    'the longest whole-character prefix within 1024 bytes',
  );
});

test('a line that is not UTF-8 is skipped; a quota error stops the filter', async (t) => {
  const { host, filter } = await filterer();
  const input = Buffer.concat([
    Buffer.from('ERROR bad \xff'.slice(0, 10)),
    Buffer.from([0xff, 0x0a]),
    Buffer.from('ERROR good\n'),
  ]);
  t.is(filter(input), 1);
  t.deepEqual(host.logs, [{ level: 3, text: 'ERROR good' }]);
  host.logResult = EdgeError.EQUOTA;
  t.is(filter(LOG), EdgeError.EQUOTA);
});

test('many calls with input stay within the memory maximum (input buffers are freed)', async (t) => {
  const { host, filter } = await filterer();
  const input = `${'INFO nothing to see here\n'.repeat(400)}ERROR one\n`; // 10 KB
  for (let i = 0; i < 1000; i++) t.is(filter(input), 1);
  t.is(host.logs.length, 1000);
});

test('a failed check traps with an abort message in the log; running out of memory traps', async (t) => {
  const host = new RecordingHost(logFilter.manifest);
  const instance = await host.instantiate(logFilter.module);
  const edgeAlloc = instance.exports.edge_alloc as (len: number) => number;
  t.throws(() => edgeAlloc(0x7fffffff), { instanceOf: WebAssembly.RuntimeError });
  t.is(host.logs.length, 1);
  t.is(host.logs[0]!.level, 3);
  t.regex(host.logs[0]!.text, /^abort: Invalid length at ~lib\/arraybuffer\.ts:\d+:\d+$/);
  // Within the length check but past the memory maximum: the allocator traps (no message).
  t.throws(() => edgeAlloc(4 << 20), { instanceOf: WebAssembly.RuntimeError });
});

// ---- sensor-sampler ----

const SENSOR = '/sys/class/hwmon/hwmon0/temp1_input';

async function sampleWith(value: SensorValue) {
  const host = new RecordingHost(sampler.manifest, { [SENSOR]: value });
  const instance = await host.instantiate(sampler.module);
  const result = (instance.exports.sample as () => number)();
  return { host, result, instance };
}

test('the binary imports only the ABI host functions, bounds its memory and matches its manifest', async (t) => {
  await checkBuiltModule(t, sampler, 'sensor-sampler', ['edge_log', 'get_sensor', 'post_uplink']);
  t.deepEqual(sampler.manifest.capabilities.sensors, [SENSOR]);
});

test('uplinks the temperature read from the sensor', async (t) => {
  const { host, result } = await sampleWith('42123\n');
  t.is(result, 0);
  t.deepEqual(host.sensorReads, [SENSOR]);
  t.deepEqual(host.uplinks, ['{"sensor":"hwmon0/temp1","milliCelsius":42123}']);
  t.deepEqual(host.logs, [
    { level: 0, text: 'uplinked {"sensor":"hwmon0/temp1","milliCelsius":42123}' },
  ]);
});

test('a temperature below zero is uplinked as a negative number', async (t) => {
  const { host, result } = await sampleWith('-5250\n');
  t.is(result, 0);
  t.deepEqual(host.uplinks, ['{"sensor":"hwmon0/temp1","milliCelsius":-5250}']);
});

test('an error from get_sensor is logged and returned, and nothing is uplinked', async (t) => {
  for (const [code, name] of [
    [EdgeError.EIO, 'EDGE_EIO'],
    [EdgeError.EDENIED, 'EDGE_EDENIED'],
  ] as const) {
    const { host, result } = await sampleWith(code);
    t.is(result, code);
    t.deepEqual(host.uplinks, []);
    t.deepEqual(host.logs, [{ level: 3, text: `cannot read ${SENSOR}: ${name}` }]);
  }
});

test('a sensor value that is not a number is logged and refused', async (t) => {
  const { host, result } = await sampleWith('n/a\n');
  t.is(result, EdgeError.EINVAL);
  t.deepEqual(host.uplinks, []);
  t.deepEqual(host.logs, [{ level: 3, text: `${SENSOR} is not a number: n/a` }]);
});

test('an uplink the schema refuses is logged and its error returned', async (t) => {
  const { host, result } = await sampleWith('2000000\n'); // over the schema's maximum
  t.is(result, EdgeError.ESCHEMA);
  t.deepEqual(host.uplinks, []);
  t.deepEqual(host.logs, [{ level: 3, text: 'uplink refused: EDGE_ESCHEMA' }]);
});

test('sampling for a long time stays within the memory maximum (the GC frees each call)', async (t) => {
  const { host, instance } = await sampleWith('42123\n');
  const sample = instance.exports.sample as () => number;
  for (let i = 0; i < 5000; i++) sample();
  t.is(host.uplinks.length, 5001);
});
