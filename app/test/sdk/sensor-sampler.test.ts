import test from 'ava';
import { EdgeError } from '../../src/sandbox/wasm-abi.js';
import {
  RecordingHost,
  buildExample,
  checkBuiltModule,
  type BuiltExample,
  type SensorValue,
} from './module-host.js';

const SENSOR = '/sys/class/hwmon/hwmon0/temp1_input';
let built: BuiltExample;

test.before(async () => {
  built = await buildExample('sensor-sampler');
});

async function sampleWith(value: SensorValue) {
  const host = new RecordingHost(built.manifest, { [SENSOR]: value });
  const instance = await host.instantiate(built.module);
  const result = (instance.exports.sample as () => number)();
  return { host, result, instance };
}

test('the binary imports only the ABI host functions, bounds its memory and matches its manifest', async (t) => {
  await checkBuiltModule(t, built, 'sensor-sampler', ['edge_log', 'get_sensor', 'post_uplink']);
  t.deepEqual(built.manifest.capabilities.sensors, [SENSOR]);
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
