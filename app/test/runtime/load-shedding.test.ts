import test from 'ava';
import { SimulatedMemorySource } from '../../src/runtime/memory-sources.js';
import { runtimeTestServer } from './runtime-helpers.js';

const MiB = 1024 * 1024;

async function squeezableServer() {
  const source = new SimulatedMemorySource({
    usedBytes: 100 * MiB,
    limitBytes: 512 * MiB,
    stallPercent: undefined,
    source: 'meminfo',
  });
  const app = await runtimeTestServer({ runtime: { pressureSource: source } });
  await app.ready();
  return { app, source };
}

test('under memory pressure a non-essential route answers 503 with Retry-After; /healthz answers', async (t) => {
  const { app, source } = await squeezableServer();
  t.teardown(() => app.close());
  const before = await app.inject('/api/v1/firmware/boot');
  t.not(before.json<{ code?: string }>().code, 'MEMORY_PRESSURE');

  source.setUsedPercent(95);
  await app.memoryPressure.check();
  t.true(app.memoryPressure.isHigh());
  const shed = await app.inject('/api/v1/firmware/boot');
  t.is(shed.statusCode, 503);
  t.is(shed.headers['retry-after'], '5');
  t.like(shed.json(), { code: 'MEMORY_PRESSURE' });
  t.is((await app.inject('/healthz')).statusCode, 200);
  t.is((await app.inject('/readyz')).statusCode, 200);
  const metrics = await app.inject('/metrics');
  t.is(metrics.statusCode, 200);
  t.regex(metrics.body, /^edge_memory_pressure 1$/m);
  t.regex(metrics.body, /^edge_requests_shed_total\{route="\/api\/v1\/firmware\/boot"\} 1$/m);
});

test('below the exit threshold every route answers again, without a restart', async (t) => {
  const { app, source } = await squeezableServer();
  t.teardown(() => app.close());
  source.setUsedPercent(95);
  await app.memoryPressure.check();
  source.setUsedPercent(85); // between exit and enter: still shedding
  await app.memoryPressure.check();
  t.is((await app.inject('/api/v1/firmware/boot')).statusCode, 503);
  source.setUsedPercent(60);
  await app.memoryPressure.check();
  t.false(app.memoryPressure.isHigh());
  const after = await app.inject('/api/v1/firmware/boot');
  t.not(after.json<{ code?: string }>().code, 'MEMORY_PRESSURE');
  const metrics = (await app.inject('/metrics')).body;
  t.regex(metrics, /^edge_memory_pressure 0$/m);
  t.regex(metrics, /^edge_memory_pressure_changes_total\{level="high"\} 1$/m);
  t.regex(metrics, /^edge_memory_pressure_changes_total\{level="normal"\} 1$/m);
});

test('/metrics exports the memory budget and the heap ceiling in effect', async (t) => {
  const { app } = await squeezableServer();
  t.teardown(() => app.close());
  // Garbage enough for a scavenge, which the GC observer reports a moment later.
  let kept = 0;
  for (let i = 0; i < 200_000; i++) kept += [i, i + 1].length;
  t.true(kept > 0);
  await new Promise((resolve) => setTimeout(resolve, 50));
  const metrics = (await app.inject('/metrics')).body;
  t.regex(metrics, /^edge_memory_limit_bytes\{source="(meminfo|cgroup v[12])"\} \d+$/m);
  t.regex(metrics, /^edge_heap_budget_bytes\{space="old"\} \d+$/m);
  t.regex(metrics, /^edge_v8_heap_size_limit_bytes \d+$/m);
  t.regex(metrics, /^edge_event_loop_utilization [\d.e-]+$/m);
  t.regex(metrics, /^nodejs_gc_duration_seconds_bucket\{le="0.0005",kind="\w+"\} \d+$/m);
});
