import {
  createHash,
  generateKeyPairSync,
  randomBytes,
  randomUUID,
  type KeyObject,
} from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEVICE_API_PATHS, deviceTokenClaims, type Ed25519PublicJwk } from '@edge/formats';
import { SignJWT } from 'jose';
import { addTargets, initRepository } from '../ota-server/src/tuf/index.js';
import {
  startPostgresCluster,
  type PostgresCluster,
} from '../ota-server/test/helpers/postgres-cluster.js';
import { freePort, waitForListening, waitForOk } from './lib/http-load.js';
import { MeasuredProcess, MiB, pinSelf, type ProcessStats } from './lib/measure.js';
import { formatters, printTable, type Cell } from './lib/table.js';

/**
 * The update server under a fleet's load on 127.0.0.1, as `ota-server serve` runs it:
 * 1,000 enrolled devices checking in at once (each request signed by the device's own key,
 * as the agent does), and 50 devices downloading a 64 MiB target at once with Range
 * requests (resumed halfway with If-Range, SHA-256 checked). Against the SQLite store and,
 * when a throwaway PostgreSQL cluster starts, the PostgreSQL one. No error is allowed.
 */

const DEVICES = Number(process.env.BENCH_DEVICES ?? 1000);
const CHECK_IN_ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const DOWNLOADS = Number(process.env.BENCH_DOWNLOADS ?? 50);
const TARGET_BYTES = 64 * MiB;
const BOARD = 'rpi4';
const FLEET_TOKEN = randomBytes(24).toString('base64url');
const OPERATOR_TOKEN = randomBytes(24).toString('base64url');
const BIN = fileURLToPath(new URL('../ota-server/bin/ota-server.js', import.meta.url));

/** The floor for downloads: node:http streaming the same file, with just enough Range support. */
const RANGE_FLOOR_SOURCE = `
import { createServer } from 'node:http';
import { createReadStream, statSync } from 'node:fs';
const [file, port, etag] = process.argv.slice(1);
const size = statSync(file).size;
createServer((request, response) => {
  const match = /^bytes=(\\d+)-(\\d*)$/.exec(request.headers.range ?? '');
  const start = match ? Number(match[1]) : 0;
  const end = match && match[2] ? Number(match[2]) : size - 1;
  response.writeHead(match ? 206 : 200, {
    'content-length': end - start + 1,
    etag,
    ...(match ? { 'content-range': \`bytes \${start}-\${end}/\${size}\` } : {}),
  });
  createReadStream(file, { start, end, highWaterMark: 256 * 1024 }).pipe(response);
}).listen(Number(port), '127.0.0.1');
`;

interface Device {
  id: string;
  key: KeyObject;
  jwk: Ed25519PublicJwk;
}

interface StoreResult {
  store: string;
  checkInsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  checkInErrors: number;
  downloadMiBPerSecond: number;
  downloadErrors: number;
  server: ProcessStats;
  errorSamples: string[];
}

interface Reply {
  status: number;
  body: Buffer;
  headers: Record<string, string | string[] | undefined>;
}

function send(
  agent: Agent,
  url: string,
  method: string,
  headers: Record<string, string>,
  body?: string,
  sink?: (chunk: Buffer) => void,
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers, agent }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => (sink ? sink(chunk) : chunks.push(chunk)));
      response.on('end', () =>
        resolve({
          status: response.statusCode ?? 0,
          body: Buffer.concat(chunks),
          headers: response.headers,
        }),
      );
      response.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

function percentile(sorted: readonly number[], share: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(share * sorted.length))] ?? NaN;
}

const CHECK_IN_PATH = DEVICE_API_PATHS.checkIn;
const CHECK_IN_BODY = JSON.stringify({
  board: BOARD,
  slot: 'a',
  firmwareHash: 'ab'.repeat(32),
  version: '1.0.0',
  update: { state: 'idle' },
});

/** A device signs its check-in as the agent does: a fresh token for this method, path and body. */
function signCheckIn(device: Device): Promise<string> {
  return new SignJWT(
    deviceTokenClaims({
      deviceId: device.id,
      method: 'POST',
      path: CHECK_IN_PATH,
      body: CHECK_IN_BODY,
      jti: randomUUID(),
    }),
  )
    .setProtectedHeader({ alg: 'EdDSA', typ: 'JWT' })
    .sign(device.key);
}

async function checkIn(
  agent: Agent,
  base: string,
  token: string,
): Promise<{ ms: number; error?: string }> {
  const started = performance.now();
  try {
    const reply = await send(
      agent,
      `${base}${CHECK_IN_PATH}`,
      'POST',
      { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      CHECK_IN_BODY,
    );
    const ms = performance.now() - started;
    const ok = reply.status === 200 && reply.body.includes('"checkInSeconds"');
    return ok ? { ms } : { ms, error: `${reply.status} ${reply.body.toString().slice(0, 200)}` };
  } catch (error) {
    return { ms: performance.now() - started, error: (error as Error).message };
  }
}

/** One device downloading the target: the first half, then the rest with If-Range, hashed. */
async function rangeDownload(
  agent: Agent,
  url: string,
  size: number,
  sha256: string,
): Promise<boolean> {
  const hash = createHash('sha256');
  const half = Math.floor(size / 2) + Math.floor(Math.random() * 1024);
  const first = await send(
    agent,
    url,
    'GET',
    { range: `bytes=0-${half - 1}` },
    undefined,
    (chunk) => hash.update(chunk),
  );
  if (first.status !== 206) return false;
  const rest = await send(
    agent,
    url,
    'GET',
    { range: `bytes=${half}-`, 'if-range': String(first.headers.etag) },
    undefined,
    (chunk) => hash.update(chunk),
  );
  return rest.status === 206 && hash.digest('hex') === sha256;
}

async function runAgainst(
  store: string,
  repo: string,
  scratch: string,
  devices: Device[],
  target: { url: string; sha256: string },
  database?: string,
  serverCpu?: number,
): Promise<StoreResult> {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  writeFileSync(join(scratch, 'fleet-tokens'), `${FLEET_TOKEN}\n`);
  writeFileSync(join(scratch, 'operator-tokens'), `${OPERATOR_TOKEN}\n`);
  const args = [
    BIN,
    'serve',
    '--repo',
    repo,
    '--port',
    String(port),
    '--data',
    join(scratch, `data-${store}`),
    '--fleet-token-file',
    join(scratch, 'fleet-tokens'),
    '--operator-token-file',
    join(scratch, 'operator-tokens'),
    '--log-level',
    'warn',
    ...(database ? ['--database', database] : []),
  ];
  const server = new MeasuredProcess(process.execPath, args, {
    cpu: serverCpu,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const agent = new Agent({ keepAlive: true, maxSockets: DEVICES + DOWNLOADS });
  try {
    await waitForOk(`${base}/readyz`);
    // Enrolment and a roll-out, so that every answer names a release for half the fleet.
    for (let i = 0; i < devices.length; i += 100) {
      await Promise.all(
        devices.slice(i, i + 100).map(async (device) => {
          const reply = await send(
            agent,
            `${base}${DEVICE_API_PATHS.enroll}`,
            'POST',
            { 'content-type': 'application/json' },
            JSON.stringify({
              fleetToken: FLEET_TOKEN,
              deviceId: device.id,
              board: BOARD,
              publicKey: device.jwk,
            }),
          );
          if (reply.status !== 201)
            throw new Error(`enrol ${device.id}: ${reply.status} ${reply.body.toString()}`);
        }),
      );
    }
    const rollout = await send(
      agent,
      `${base}/api/v1/rollouts`,
      'POST',
      { 'content-type': 'application/json', authorization: `Bearer ${OPERATOR_TOKEN}` },
      JSON.stringify({ board: BOARD, version: '1.0.0', percent: 50 }),
    );
    if (rollout.status !== 201)
      throw new Error(`roll-out: ${rollout.status} ${rollout.body.toString()}`);

    // Round 0 opens the connections and warms up; the rest are measured.
    const latencies: number[] = [];
    let checkInErrors = 0;
    const errorSamples = new Set<string>();
    let measuredSeconds = 0;
    for (let round = 0; round <= CHECK_IN_ROUNDS; round++) {
      // Signing is the devices' work, done before the clock starts: the server is measured.
      const tokens = await Promise.all(devices.map(signCheckIn));
      // Each device connects anew, as one checking in every few minutes does.
      const fresh = new Agent({ keepAlive: false });
      const started = performance.now();
      const results = await Promise.all(tokens.map((token) => checkIn(fresh, base, token)));
      const seconds = (performance.now() - started) / 1000;
      if (round === 0) continue;
      measuredSeconds += seconds;
      for (const result of results) {
        latencies.push(result.ms);
        if (result.error !== undefined) {
          checkInErrors++;
          errorSamples.add(result.error);
        }
      }
    }
    latencies.sort((a, b) => a - b);

    const downloadStarted = performance.now();
    const downloads = await Promise.all(
      Array.from({ length: DOWNLOADS }, () =>
        rangeDownload(agent, `${base}${target.url}`, TARGET_BYTES, target.sha256).catch(
          () => false,
        ),
      ),
    );
    const downloadSeconds = (performance.now() - downloadStarted) / 1000;
    const stats = await server.stats();
    return {
      store,
      checkInsPerSecond: latencies.length / measuredSeconds,
      p50Ms: percentile(latencies, 0.5),
      p99Ms: percentile(latencies, 0.99),
      maxMs: latencies.at(-1) ?? NaN,
      checkInErrors,
      downloadMiBPerSecond: (DOWNLOADS * TARGET_BYTES) / MiB / downloadSeconds,
      downloadErrors: downloads.filter((ok) => !ok).length,
      server: stats,
      errorSamples: [...errorSamples].slice(0, 5),
    };
  } finally {
    agent.destroy();
    await server.stop();
  }
}

/** The same 50 Range downloads from the floor server. */
async function downloadFloor(
  file: string,
  sha256: string,
  cpu: number | undefined,
): Promise<{ mibPerSecond: number; errors: number; peakRssBytes: number }> {
  const port = await freePort();
  const server = new MeasuredProcess(
    process.execPath,
    ['--input-type=module', '-e', RANGE_FLOOR_SOURCE, file, String(port), `"${sha256}"`],
    { cpu },
  );
  const agent = new Agent({ keepAlive: true, maxSockets: DOWNLOADS });
  try {
    await waitForListening(server, port);
    const started = performance.now();
    const downloads = await Promise.all(
      Array.from({ length: DOWNLOADS }, () =>
        rangeDownload(agent, `http://127.0.0.1:${port}/`, TARGET_BYTES, sha256).catch(() => false),
      ),
    );
    const seconds = (performance.now() - started) / 1000;
    const stats = await server.stats();
    return {
      mibPerSecond: (DOWNLOADS * TARGET_BYTES) / MiB / seconds,
      errors: downloads.filter((ok) => !ok).length,
      peakRssBytes: stats.peakRssBytes,
    };
  } finally {
    agent.destroy();
    await server.stop();
  }
}

export default async function bench(): Promise<void> {
  const scratch = mkdtempSync(join(tmpdir(), 'bench-ota-server-'));
  const pinned = availableParallelism() >= 2;
  const unpin = pinned ? pinSelf(1) : () => undefined;
  let cluster: PostgresCluster | undefined;
  try {
    const repo = join(scratch, 'repo');
    await initRepository(repo);
    const image = join(scratch, 'image.bin');
    const content = randomBytes(TARGET_BYTES);
    writeFileSync(image, content);
    const sha256 = createHash('sha256').update(content).digest('hex');
    await addTargets(repo, [{ kind: 'image', board: BOARD, version: '1.0.0', path: image }]);
    const target = { url: `/tuf/targets/${BOARD}/1.0.0/${sha256}.rootfs.ext4`, sha256 };
    const devices: Device[] = Array.from({ length: DEVICES }, (_, n) => {
      const pair = generateKeyPairSync('ed25519');
      return {
        id: `bench-${String(n).padStart(5, '0')}`,
        key: pair.privateKey,
        jwk: pair.publicKey.export({ format: 'jwk' }) as Ed25519PublicJwk,
      };
    });

    const floor = await downloadFloor(
      join(repo, 'targets', target.url.replace('/tuf/targets/', '')),
      target.sha256,
      pinned ? 0 : undefined,
    );
    const results: StoreResult[] = [];
    const notes: string[] = [];
    results.push(
      await runAgainst('sqlite', repo, scratch, devices, target, undefined, pinned ? 0 : undefined),
    );
    try {
      cluster = await startPostgresCluster();
    } catch (error) {
      notes.push(`PostgreSQL not measured: ${(error as Error).message.split('\n')[0]}`);
    }
    if (cluster) {
      const url = await cluster.createDatabase('bench');
      results.push(
        await runAgainst('postgres', repo, scratch, devices, target, url, pinned ? 0 : undefined),
      );
    }

    const rows = results.map(
      (result) =>
        [
          `ota-server serve (${result.store})`,
          result.checkInsPerSecond,
          result.p50Ms,
          result.p99Ms,
          result.maxMs,
          result.checkInErrors,
          result.downloadMiBPerSecond,
          result.downloadErrors,
          result.server.peakRssBytes / MiB,
        ] as [string, ...Cell[]],
    );
    rows.push([
      'node:http file stream (floor)',
      undefined,
      undefined,
      undefined,
      undefined,
      undefined,
      floor.mibPerSecond,
      floor.errors,
      floor.peakRssBytes / MiB,
    ]);
    printTable({
      title:
        `update server on 127.0.0.1: ${DEVICES} concurrent signed check-ins x ${CHECK_IN_ROUNDS} rounds, ` +
        `${DOWNLOADS} concurrent Range downloads of ${TARGET_BYTES / MiB} MiB` +
        (pinned ? ' (server on CPU 0, load on CPU 1)' : ''),
      columns: [
        { header: 'check-ins/s', format: formatters.integer },
        { header: 'p50 ms', format: formatters.fixed(1) },
        { header: 'p99 ms', format: formatters.fixed(1) },
        { header: 'max ms', format: formatters.fixed(1) },
        { header: 'check-in errors', format: formatters.integer },
        { header: 'download MiB/s', format: formatters.integer },
        { header: 'download errors', format: formatters.integer },
        { header: 'server peak RSS MiB', format: formatters.integer },
      ],
      rows,
    });
    for (const note of notes) process.stdout.write(`${note}\n`);
    for (const result of results) {
      for (const sample of result.errorSamples) {
        process.stdout.write(`${result.store} check-in error: ${sample}\n`);
      }
    }
    const failed = results.filter(
      (result) => result.checkInErrors > 0 || result.downloadErrors > 0,
    );
    if (floor.errors > 0) failed.push({ store: 'node:http floor' } as StoreResult);
    if (failed.length) {
      throw new Error(`errors under load: ${failed.map((result) => result.store).join(', ')}`);
    }
  } finally {
    unpin();
    await cluster?.stop();
    rmSync(scratch, { recursive: true, force: true });
  }
}
