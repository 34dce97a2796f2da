import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { ModuleRegistry } from '../app/src/sandbox/module-registry.js';
import { testConfig, testServer } from '../app/test/helpers.js';
import { guestWat, manifestFor, memoryLog, wat } from '../app/test/sandbox/sandbox-helpers.js';
import { median } from './lib/measure.js';
import { formatters, printTable } from './lib/table.js';

/**
 * The WASM module sandbox: starting a cached module in a new worker and a call through the
 * server's HTTP API, each against plain WebAssembly on the main thread (the floor); host-call
 * overhead; RSS per idle module; and a module replaced 100 times under load (no call may fail).
 */
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 20);
const CALLS = Number(process.env.BENCH_CALLS ?? 2000);
const IDLE_MODULES = 10;
const SWAPS = 100;
const HOST_CALLS = 100_000;

const rssBytes = () =>
  Number(/VmRSS:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))![1]) * 1024;
const settle = () => new Promise((resolve) => setTimeout(resolve, 200));

export default async function sandboxBench(): Promise<void> {
  const wasm = wat(guestWat());
  const limits = {
    ...testConfig().modules,
    maxModules: 200,
    maxHostCallsPerSecond: 1e9,
    maxIoBytesPerSecond: 1e9,
  };
  const quotas = {
    cpuMsPerCall: 1000,
    memoryBytes: 1 << 20,
    hostCallsPerSecond: 1e9,
    ioBytesPerSecond: 1e9,
  };
  const registry = new ModuleRegistry(limits, { log: memoryLog() });
  const noop = { edge_log: () => 0, get_sensor: () => 0, post_uplink: () => 0 };
  try {
    process.stdout.write(
      `sandbox: node ${process.version}, ${ROUNDS} starts, ${CALLS} API calls\n`,
    );
    // Start: the module is compiled once (cached by hash); each round starts a new worker.
    await registry.install(manifestFor('warm', wasm, { quotas }), wasm);
    const starts: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const started = performance.now();
      await registry.install(manifestFor('warm', wasm, { quotas, version: `1.0.${round}` }), wasm);
      starts.push(performance.now() - started);
    }
    const module = await WebAssembly.compile(wasm);
    const floorStarts: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const started = performance.now();
      await WebAssembly.instantiate(module, { env: noop });
      floorStarts.push(performance.now() - started);
    }
    const spawnOnly: number[] = [];
    for (let round = 0; round < 5; round++) {
      const started = performance.now();
      const worker = new Worker('require("node:worker_threads").parentPort.postMessage(1)', {
        eval: true,
      });
      await new Promise((resolve) => worker.once('message', resolve));
      spawnOnly.push(performance.now() - started);
      await worker.terminate();
    }

    // A call through the HTTP API (a listening server, fetch) against a direct call on the main thread.
    const tokenDir = mkdtempSync('/tmp/edge-bench-sandbox-');
    writeFileSync(`${tokenDir}/token`, 'bench');
    const config = testConfig({ EDGE_MODULES_API_TOKEN_FILE: `${tokenDir}/token` });
    const app = await testServer({ config });
    app.modules = registry;
    const base = await app.listen({ host: '127.0.0.1', port: 0 });
    const callOnce = async () => {
      const response = await fetch(`${base}/api/v1/modules/warm/call/add`, {
        method: 'POST',
        headers: { authorization: 'Bearer bench', 'content-type': 'application/json' },
        body: '{"args":[1,2]}',
      });
      if (response.status !== 200)
        throw new Error(`call: HTTP ${response.status} ${await response.text()}`);
      await response.arrayBuffer();
    };
    for (let i = 0; i < 100; i++) await callOnce();
    let started = performance.now();
    for (let i = 0; i < CALLS; i++) await callOnce();
    const apiCallUs = ((performance.now() - started) / CALLS) * 1000;
    started = performance.now();
    for (let i = 0; i < CALLS; i++)
      await registry.call('warm', 'add', { kind: 'args', args: [1, 2] });
    const registryCallUs = ((performance.now() - started) / CALLS) * 1000;
    const instance = await WebAssembly.instantiate(module, { env: noop });
    const add = instance.exports.add as (a: number, b: number) => number;
    started = performance.now();
    for (let i = 0; i < CALLS * 100; i++) add(1, 2);
    const directCallUs = ((performance.now() - started) / (CALLS * 100)) * 1000;

    // Host-call overhead: the guest's loop of edge_log(0, 0, 0) in the worker (checks, budgets,
    // a message per accepted log) against the same loop with a no-op import on the main thread.
    const flood = await registry.call('warm', 'flood', { kind: 'args', args: [HOST_CALLS] });
    const hostCallNs = (flood.cpuMs * 1e6) / HOST_CALLS;
    const flooding = instance.exports.flood as (n: number) => number;
    started = performance.now();
    flooding(HOST_CALLS);
    const noopCallNs = ((performance.now() - started) * 1e6) / HOST_CALLS;
    const logless = new ModuleRegistry(limits, { log: memoryLog() });
    await logless.install(
      manifestFor('quiet', wasm, { quotas, capabilities: { log: false } }),
      wasm,
    );
    const denied = await logless.call('quiet', 'flood', { kind: 'args', args: [HOST_CALLS] });
    const deniedCallNs = (denied.cpuMs * 1e6) / HOST_CALLS;
    await logless.close();

    // RSS per idle module.
    await settle();
    const before = rssBytes();
    for (let index = 0; index < IDLE_MODULES; index++) {
      await registry.install(manifestFor(`idle-${index}`, wasm, { quotas }), wasm);
    }
    await settle();
    const perModule = (rssBytes() - before) / IDLE_MODULES;
    const floorBefore = rssBytes();
    const kept: unknown[] = [];
    for (let index = 0; index < IDLE_MODULES; index++)
      kept.push(await WebAssembly.instantiate(module, { env: noop }));
    await settle();
    const floorPerModule = (rssBytes() - floorBefore) / IDLE_MODULES;
    for (let index = 0; index < IDLE_MODULES; index++) await registry.remove(`idle-${index}`);

    // Hot swap under load: calls in a loop while the module is replaced SWAPS times.
    let swapping = true;
    let ok = 0;
    let failed = 0;
    const load = (async () => {
      while (swapping) {
        try {
          await callOnce();
          ok++;
        } catch {
          failed++;
        }
      }
    })();
    started = performance.now();
    for (let swap = 0; swap < SWAPS; swap++) {
      await registry.install(manifestFor('warm', wasm, { quotas, version: `2.0.${swap}` }), wasm);
    }
    const swapSeconds = (performance.now() - started) / 1000;
    swapping = false;
    await load;
    await app.close();
    rmSync(tokenDir, { recursive: true, force: true });

    const rows: Array<[string, number, number | undefined]> = [
      [
        'start a cached module in a new worker, ms (floor: instantiate on main)',
        median(starts),
        median(floorStarts),
      ],
      ['  of which a bare eval worker spawn, ms', median(spawnOnly), undefined],
      ['call round trip via HTTP API, µs (floor: direct call)', apiCallUs, directCallUs],
      ['call via registry (worker message), µs (floor: direct call)', registryCallUs, directCallUs],
      ['host call edge_log accepted, ns (floor: no-op import)', hostCallNs, noopCallNs],
      ['host call refused (no capability), ns (floor: no-op import)', deniedCallNs, noopCallNs],
      [
        'RSS per idle module, MiB (floor: instance on main)',
        perModule / 2 ** 20,
        floorPerModule / 2 ** 20,
      ],
    ];
    printTable({
      title: 'sandbox: ours against the floor',
      columns: [
        { header: 'ours', format: formatters.fixed(3) },
        { header: 'floor', format: formatters.fixed(3) },
        { header: 'ours / floor', format: formatters.ratio },
      ],
      rows: rows.map(([name, ours, floor]) => [
        name,
        ours,
        floor,
        floor ? ours / floor : undefined,
      ]),
    });
    process.stdout.write(
      `\nhot swap: ${SWAPS} replacements in ${swapSeconds.toFixed(2)} s under load: ${ok} calls ok, ${failed} failed\n`,
    );
    if (failed > 0) process.exitCode = 1;
  } finally {
    await registry.close();
  }
}
