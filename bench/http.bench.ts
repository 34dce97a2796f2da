import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { BUNDLE, buildBundle } from '../app/build.js';
import { buildGoPeer } from './lib/go-build.js';
import { freePort, runWrk, waitForListening, waitForOk, type WrkResult } from './lib/http-load.js';
import { MeasuredProcess, MiB, median, pinSelf, type ProcessStats } from './lib/measure.js';
import { formatters, printTable, type Cell } from './lib/table.js';

/**
 * GET /api/v1/firmware/hash on 127.0.0.1: the edge server's bundle against a plain node:http
 * server (the framework floor) and Go's net/http (the original design), all in one run.
 * Starts and load rounds take the servers in turn, so that a neighbour's burst on a shared
 * machine does not fall on one server alone.
 */

const ROUTE = '/api/v1/firmware/hash';
const SLOT_BYTES = 64 * MiB;
const LOAD_SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const ROUND_SECONDS = Math.max(1, Math.round(LOAD_SECONDS / ROUNDS));
const WARM_UP_SECONDS = 2;
const STARTS = Number(process.env.BENCH_STARTS ?? 3);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
/** After the first 200, before reading idle RSS: start-up work and its garbage settle. */
const SETTLE_MS = 1_000;

const GOALS = {
  bundleBytes: 1.5 * MiB,
  startUpVsBareNode: 2,
  idleRssAboveBareNode: 25 * MiB,
  requestsVsFloor: 0.85,
};

const EDGE = 'edge server (bundle)';
const FLOOR = 'node:http (floor)';
const GO = 'go net/http';
const BARE_NODE = "node -e '' (reference)";

interface ServerUnderTest {
  name: string;
  command: string;
  args: string[];
}

interface LiveServer {
  process: MeasuredProcess;
  url: string;
}

interface ServerResult {
  name: string;
  startUpSeconds: number;
  idle: ProcessStats;
  afterLoad: ProcessStats;
  requestsPerSecond: number;
  p50Seconds: number;
  /** The worst round's. */
  p99Seconds: number;
  errors: number;
  /** Server CPU time per request under load: unlike requests/s, it holds when wrk is starved. */
  cpuSecondsPerRequest: number;
}

interface BareNode {
  startUpSeconds: number;
  idle: ProcessStats;
}

export default async function httpBench(): Promise<void> {
  // Two CPUs or more: servers on the first, wrk (and this process) on the second.
  const cpus = availableParallelism();
  const pinned = cpus >= 2;
  const serverCpu = pinned ? 0 : undefined;
  const loadCpu = pinned ? 1 : undefined;
  const scratch = mkdtempSync('/tmp/edge-bench-http-');
  const unpin = pinned ? pinSelf(1) : () => undefined;
  const live = new Map<string, LiveServer>();
  let idleNode: MeasuredProcess | undefined;
  try {
    const bundleBytes = await buildBundle();
    const slotPath = join(scratch, 'slot.img');
    const expected = JSON.stringify({ hash: await writeRandomSlot(slotPath) });
    const goBinary = await buildGoPeer(
      fileURLToPath(new URL('peers/go-hash-server', import.meta.url)),
    );

    const loadStart = loadavg()[0]!;
    process.stdout.write(
      `http: GET ${ROUTE}, ${SLOT_BYTES / MiB} MiB slot, wrk -t1 -c${CONNECTIONS}, ` +
        `${WARM_UP_SECONDS} s warm-up then ${ROUNDS} x ${ROUND_SECONDS} s per server in turn, ` +
        `start-up median of ${STARTS}; ` +
        (pinned ? `servers on CPU ${serverCpu}, wrk on CPU ${loadCpu}` : 'one CPU: not pinned') +
        `; node ${process.version}, load average ${loadStart.toFixed(2)}\n`,
    );
    if (!goBinary) process.stdout.write(`http: ${GO} skipped: no \`go\` on PATH (golang-go)\n`);

    const servers: ServerUnderTest[] = [
      { name: EDGE, command: process.execPath, args: [BUNDLE] },
      {
        name: FLOOR,
        command: process.execPath,
        args: [fileURLToPath(new URL('peers/node-http-hash-server.mjs', import.meta.url))],
      },
      ...(goBinary ? [{ name: GO, command: goBinary, args: [] }] : []),
    ];

    // Start-up, in turns; each server's last start stays up for what follows.
    const startUps = new Map<string, number[]>([[BARE_NODE, []]]);
    for (let start = 0; start < STARTS; start++) {
      startUps.get(BARE_NODE)!.push(await bareNodeRun(serverCpu));
      for (const server of servers) {
        await live.get(server.name)?.process.stop();
        const started = await startServer(server, slotPath, serverCpu);
        live.set(server.name, started);
        startUps.set(server.name, [...(startUps.get(server.name) ?? []), started.seconds]);
      }
    }
    idleNode = new MeasuredProcess(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], {
      cpu: serverCpu,
      env: cleanEnv(),
    });
    for (const server of servers) {
      const body = await waitForOk(live.get(server.name)!.url);
      if (body !== expected) throw new Error(`${server.name} answered ${body}, not ${expected}`);
    }
    await sleep(SETTLE_MS);
    const idle = new Map<string, ProcessStats>();
    for (const server of servers)
      idle.set(server.name, await live.get(server.name)!.process.stats());
    const bare: BareNode = {
      startUpSeconds: median(startUps.get(BARE_NODE)!),
      idle: await idleNode.stats(),
    };

    for (const server of servers) {
      const { url } = live.get(server.name)!;
      await runWrk({ url, connections: CONNECTIONS, seconds: WARM_UP_SECONDS, cpu: loadCpu });
    }
    const totals = new Map(servers.map((server) => [server.name, new LoadTotals()]));
    for (let round = 0; round < ROUNDS; round++) {
      for (const server of servers) {
        const { process: running, url } = live.get(server.name)!;
        const before = await running.stats();
        const load = await runWrk({
          url,
          connections: CONNECTIONS,
          seconds: ROUND_SECONDS,
          cpu: loadCpu,
        });
        totals.get(server.name)!.add(load, (await running.stats()).cpuSeconds - before.cpuSeconds);
      }
    }

    const results: ServerResult[] = [];
    for (const server of servers) {
      results.push({
        name: server.name,
        startUpSeconds: median(startUps.get(server.name)!),
        idle: idle.get(server.name)!,
        afterLoad: await live.get(server.name)!.process.stats(),
        ...totals.get(server.name)!.summary(),
      });
    }
    printResults(results, bare);
    printGoals(bundleBytes, results, bare);
    const busy = Math.max(loadStart, loadavg()[0]!);
    if (busy > cpus / 2) {
      process.stdout.write(
        `http: load average reached ${busy.toFixed(2)} on ${cpus} CPUs: other work ` +
          'shared the machine, so wall-clock figures are noisy; req/CPU-s holds better\n\n',
      );
    }
  } finally {
    for (const { process: running } of live.values()) await running.stop();
    await idleNode?.stop();
    unpin();
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** A random slot image (its ext4 magic cleared, so it is hashed whole); returns its SHA-256. */
async function writeRandomSlot(path: string): Promise<string> {
  const data = randomBytes(SLOT_BYTES);
  data.writeUInt16LE(0, 1024 + 56);
  writeFileSync(path, data);
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** `node -e ''` from spawn to exit: the cost of a bare node start, in seconds. */
async function bareNodeRun(cpu: number | undefined): Promise<number> {
  const node = new MeasuredProcess(process.execPath, ['-e', ''], { cpu, env: cleanEnv() });
  await node.exited;
  return node.secondsSinceSpawn();
}

/** Starts a server on a free port; `seconds` is from spawn to its first accepted connection. */
async function startServer(
  server: ServerUnderTest,
  slotPath: string,
  cpu: number | undefined,
): Promise<LiveServer & { seconds: number }> {
  const port = await freePort();
  const running = new MeasuredProcess(server.command, server.args, {
    cpu,
    env: cleanEnv({
      EDGE_SERVER_HOST: '127.0.0.1',
      EDGE_SERVER_PORT: String(port),
      EDGE_FIRMWARE_SLOT_PATH: slotPath,
      EDGE_LOG_LEVEL: 'warn',
    }),
  });
  try {
    await waitForListening(running, port);
  } catch (error) {
    await running.stop();
    throw error;
  }
  return {
    process: running,
    url: `http://127.0.0.1:${port}${ROUTE}`,
    seconds: running.secondsSinceSpawn(),
  };
}

/** Only what a server needs, so that a developer's EDGE_* settings do not leak into the run. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH, HOME: process.env.HOME, ...extra };
}

/** One server's load rounds, added up. */
class LoadTotals {
  #requests = 0;
  #seconds = 0;
  #cpuSeconds = 0;
  #errors = 0;
  #p50s: number[] = [];
  #p99s: number[] = [];

  add(load: WrkResult, cpuSeconds: number): void {
    this.#requests += load.requests;
    this.#seconds += load.seconds;
    this.#cpuSeconds += cpuSeconds;
    this.#errors += load.errors;
    this.#p50s.push(load.p50Seconds);
    this.#p99s.push(load.p99Seconds);
  }

  summary() {
    return {
      requestsPerSecond: this.#requests / this.#seconds,
      p50Seconds: median(this.#p50s),
      p99Seconds: Math.max(...this.#p99s),
      errors: this.#errors,
      cpuSecondsPerRequest: this.#cpuSeconds / this.#requests,
    };
  }
}

const ms = (seconds: number) => seconds * 1000;
const mib = (bytes: number) => bytes / MiB;

function printResults(results: ServerResult[], bare: BareNode): void {
  const rows = results.map((result): [string, ...Cell[]] => [
    result.name,
    result.requestsPerSecond,
    ms(result.p50Seconds),
    ms(result.p99Seconds),
    result.errors,
    1 / result.cpuSecondsPerRequest,
    mib(result.idle.rssBytes),
    mib(result.afterLoad.rssBytes),
    ms(result.startUpSeconds),
  ]);
  rows.push([
    BARE_NODE,
    undefined,
    undefined,
    undefined,
    undefined,
    undefined,
    mib(bare.idle.rssBytes),
    undefined,
    ms(bare.startUpSeconds),
  ]);
  const one = formatters.fixed(1);
  printTable({
    title:
      'http: servers (p50: median round, p99: worst round; req/CPU-s: requests per second of ' +
      "server CPU; start-up: spawn to first accepted connection, node -e '': spawn to exit)",
    columns: [
      { header: 'requests/s', format: formatters.integer },
      { header: 'p50 ms' },
      { header: 'p99 ms' },
      { header: 'errors', format: formatters.integer },
      { header: 'req/CPU-s', format: formatters.integer },
      { header: 'idle RSS MiB', format: one },
      { header: 'RSS after load MiB', format: one },
      { header: 'start-up ms', format: one },
    ],
    rows,
    ratios: [
      { column: 'requests/s', baseline: FLOOR, header: 'req/s vs floor' },
      { column: 'req/CPU-s', baseline: FLOOR, header: 'req/CPU-s vs floor' },
    ],
  });
}

function printGoals(bundleBytes: number, results: ServerResult[], bare: BareNode): void {
  const edge = results.find((result) => result.name === EDGE)!;
  const floor = results.find((result) => result.name === FLOOR)!;
  const startUpRatio = edge.startUpSeconds / bare.startUpSeconds;
  const rssAbove = edge.idle.rssBytes - bare.idle.rssBytes;
  const requestsRatio = edge.requestsPerSecond / floor.requestsPerSecond;
  const perCpuRatio = floor.cpuSecondsPerRequest / edge.cpuSecondsPerRequest;
  const verdict = (met: boolean) => (met ? 'met' : 'MISSED');
  printTable({
    title: 'http: goals (edge server)',
    columns: [{ header: 'measured' }, { header: 'goal' }, { header: 'result' }],
    rows: [
      [
        'bundle size',
        `${formatters.integer(bundleBytes)} B (${mib(bundleBytes).toFixed(2)} MiB)`,
        `< ${mib(GOALS.bundleBytes)} MiB`,
        verdict(bundleBytes < GOALS.bundleBytes),
      ],
      [
        "start-up vs node -e ''",
        `${formatters.ratio(startUpRatio)} (${ms(edge.startUpSeconds).toFixed(1)} / ${ms(bare.startUpSeconds).toFixed(1)} ms)`,
        `<= ${formatters.ratio(GOALS.startUpVsBareNode)}`,
        verdict(startUpRatio <= GOALS.startUpVsBareNode),
      ],
      [
        'idle RSS above a bare node',
        `+${mib(rssAbove).toFixed(1)} MiB (${mib(edge.idle.rssBytes).toFixed(1)} - ${mib(bare.idle.rssBytes).toFixed(1)})`,
        `<= ${mib(GOALS.idleRssAboveBareNode)} MiB`,
        verdict(rssAbove <= GOALS.idleRssAboveBareNode),
      ],
      [
        'requests/s vs node:http',
        `${formatters.ratio(requestsRatio)} (per server CPU-second: ${formatters.ratio(perCpuRatio)})`,
        `>= ${formatters.ratio(GOALS.requestsVsFloor)}`,
        verdict(requestsRatio >= GOALS.requestsVsFloor),
      ],
    ],
  });
}
