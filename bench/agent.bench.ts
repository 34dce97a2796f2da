import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import { downloadResumable } from '../app/src/ota/resumable-download.js';
import { TokenBucket } from '../app/src/ota/token-bucket.js';
import { startRangeServer } from '../app/test/ota/range-server.js';
import { MiB, measureRun, median, type RunMeasurement } from './lib/measure.js';
import { formatters, printTable, type Cell } from './lib/table.js';

/**
 * The update agent's goals (issue 5) that are not the delta applier's: the token bucket's
 * rate over a real download from 127.0.0.1, and the slot hash against coreutils' sha256sum.
 * Applying a delta is bench/delta.bench.ts's.
 */

const RATE = 1_000_000;
const BURST = 64 * 1024;
const TRANSFER_SECONDS = Number(process.env.BENCH_SECONDS ?? 30);
/** Windows of the transfer, to show the rate holds throughout and not only on average. */
const WINDOW_SECONDS = 5;
const SLOT_BYTES = 256 * MiB;
const HASH_RUNS = Number(process.env.BENCH_RUNS ?? 3);

const GOALS = { rateTolerance: 0.05, hashVsSha256sum: 1.2 };

const MB = 1e6;
const node = process.execPath;
const hashScript = fileURLToPath(new URL('agent/hash-file.ts', import.meta.url));
const OURS_TSX = 'ours: node --import tsx hash-file.ts';
const LIMIT = 'limit (reference)';
const OURS_BUNDLE = 'ours: node hash-file.mjs (esbuild)';

interface TransferResult {
  bytes: number;
  /** From the call to the last byte written (the final hash check excluded). */
  transferSeconds: number;
  /** From the call to the first bytes written. */
  firstBytesSeconds: number;
  /** Bytes after the first write, over the time from the first write to the last. */
  steadyRate: number;
  /** The whole call, with the final SHA-256 check and rename. */
  callSeconds: number;
  windowRates: number[];
}

interface HashRuns {
  name: string;
  runs: RunMeasurement[];
  /** The child's own hashing time, start-up excluded (ours only). */
  hashSeconds?: number[];
}

export default async function agentBench(): Promise<void> {
  const loadStart = loadavg()[0]!;
  const scratchRoot = '/tmp/edge-bench-agent';
  mkdirSync(scratchRoot, { recursive: true });
  const scratch = mkdtempSync(join(scratchRoot, 'run-'));
  process.stdout.write(
    `agent: token bucket ${RATE / MB} MB/s (burst ${BURST / 1024} KiB) over ${TRANSFER_SECONDS} s ` +
      `from 127.0.0.1; SHA-256 of a ${SLOT_BYTES / MiB} MiB file, median of ${HASH_RUNS}; ` +
      `node ${process.version}, load average ${loadStart.toFixed(2)}\n`,
  );
  try {
    const transfer = await measureTransfer(scratch);
    const hashes = await measureHashes(scratch);
    printTransfer(transfer);
    printHashes(hashes);
    printGoals(transfer, hashes);
    process.stdout.write(
      'agent: applying a delta (peak RSS above the idle agent, time vs bspatch 4.3) is measured ' +
        'by bench/delta.bench.ts: `npm run bench -- delta`, table "Delta apply" and its goals\n',
    );
    process.stdout.write(
      `agent: load average ${loadStart.toFixed(2)} at start, ${loadavg()[0]!.toFixed(2)} at end ` +
        '(1 min; the machine is shared)\n\n',
    );
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** Downloads RATE x TRANSFER_SECONDS random bytes through the agent's downloader and bucket. */
async function measureTransfer(scratch: string): Promise<TransferResult> {
  const content = randomBytes(RATE * TRANSFER_SECONDS);
  const server = await startRangeServer(content);
  const samples: Array<{ at: number; bytes: number }> = [];
  try {
    // The agent has talked HTTP (its check-in) before it downloads: fetch is loaded by then.
    await fetch(server.url, { headers: { range: `bytes=${content.length - 1}-` } }).then(
      (response) => response.arrayBuffer(),
    );
    const bucket = new TokenBucket(RATE, BURST);
    const started = performance.now();
    await downloadResumable({
      file: {
        url: server.url,
        length: content.length,
        sha256: createHash('sha256').update(content).digest('hex'),
      },
      destination: join(scratch, 'download.bin'),
      bucket,
      attempts: 1,
      onProgress: ({ bytesDone }) => samples.push({ at: performance.now(), bytes: bytesDone }),
    });
    const callSeconds = (performance.now() - started) / 1000;
    const first = samples[0];
    const last = samples.at(-1);
    if (!first || !last || last.bytes !== content.length) {
      throw new Error('the download did not finish');
    }
    return {
      bytes: content.length,
      transferSeconds: (last.at - started) / 1000,
      firstBytesSeconds: (first.at - started) / 1000,
      steadyRate: (last.bytes - first.bytes) / ((last.at - first.at) / 1000),
      callSeconds,
      windowRates: windowRates(samples, started),
    };
  } finally {
    await server.close();
    rmSync(join(scratch, 'download.bin'), { force: true });
  }
}

/** Bytes per second in each whole WINDOW_SECONDS window from the start. */
function windowRates(samples: Array<{ at: number; bytes: number }>, started: number): number[] {
  const rates: number[] = [];
  const bytesAt = (seconds: number) => {
    let bytes = 0;
    for (const sample of samples) {
      if ((sample.at - started) / 1000 > seconds) break;
      bytes = sample.bytes;
    }
    return bytes;
  };
  const lastSeconds = (samples.at(-1)!.at - started) / 1000;
  for (let from = 0; from + WINDOW_SECONDS <= lastSeconds; from += WINDOW_SECONDS) {
    rates.push((bytesAt(from + WINDOW_SECONDS) - bytesAt(from)) / WINDOW_SECONDS);
  }
  return rates;
}

/**
 * Ours as a process of its own, as sha256sum is (run by tsx, as briefed, and bundled by
 * esbuild and run by plain node, as the device runs it), against sha256sum: one file, in the
 * page cache, runs taking turns.
 */
async function measureHashes(scratch: string): Promise<HashRuns[]> {
  const slot = join(scratch, 'slot.img');
  writeRandomFile(slot, SLOT_BYTES);
  warmPageCache(slot);
  const bundle = join(scratch, 'hash-file.mjs');
  await bundleHashScript(bundle);
  const contenders: Array<HashRuns & { argv: [string, ...string[]] }> = [
    {
      name: OURS_TSX,
      argv: [node, '--import', 'tsx', hashScript, slot],
      runs: [],
      hashSeconds: [],
    },
    { name: OURS_BUNDLE, argv: [node, bundle, slot], runs: [], hashSeconds: [] },
    { name: sha256sumName(), argv: ['sha256sum', slot], runs: [] },
  ];
  let expected: string | undefined;
  // One round first, not counted: tsx's transform cache is warm after it.
  for (let round = -1; round < HASH_RUNS; round++) {
    for (const contender of contenders) {
      const [command, ...args] = contender.argv;
      const { run, output } = await runWithOutput(command, args, scratch);
      const hash = output.split(' ')[0];
      expected ??= hash;
      if (hash !== expected) throw new Error(`${contender.name} gave ${hash}, not ${expected}`);
      if (round < 0) continue;
      contender.runs.push(run);
      if (contender.hashSeconds) {
        const seconds = /^hash-seconds ([\d.e-]+)$/m.exec(output)?.[1];
        if (seconds === undefined) throw new Error(`no hash-seconds from ${contender.name}`);
        contender.hashSeconds.push(Number(seconds));
      }
    }
  }
  rmSync(slot, { force: true });
  return contenders;
}

/** The hash script as one file for plain node, the way app/build.ts bundles the edge server. */
async function bundleHashScript(outfile: string): Promise<void> {
  await build({
    entryPoints: [hashScript],
    outfile,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    minify: true,
    logLevel: 'warning',
  });
}

async function runWithOutput(
  command: string,
  args: string[],
  scratch: string,
): Promise<{ run: RunMeasurement; output: string }> {
  const outputPath = join(scratch, 'stdout');
  const fd = openSync(outputPath, 'w');
  let run: RunMeasurement;
  try {
    run = await measureRun(command, args, { stdio: ['ignore', fd, 'inherit'] });
  } finally {
    closeSync(fd);
  }
  if (run.exitCode !== 0) throw new Error(`${command} exited with ${run.exitCode}`);
  return { run, output: readFileSync(outputPath, 'utf8') };
}

function writeRandomFile(path: string, bytes: number): void {
  const fd = openSync(path, 'w');
  try {
    for (let done = 0; done < bytes; done += 16 * MiB) {
      writeSync(fd, randomBytes(Math.min(16 * MiB, bytes - done)));
    }
  } finally {
    closeSync(fd);
  }
}

/** Reads the file once, so that every run below finds it in the page cache. */
function warmPageCache(path: string): void {
  const fd = openSync(path, 'r');
  const buffer = Buffer.allocUnsafe(4 * MiB);
  try {
    while (readSync(fd, buffer, 0, buffer.length, null) > 0);
  } finally {
    closeSync(fd);
  }
}

function sha256sumName(): string {
  const version = execFileSync('sha256sum', ['--version'], { encoding: 'utf8' }).split('\n')[0];
  const number = /(\d+(\.\d+)+)\s*$/.exec(version ?? '')?.[1];
  return number ? `sha256sum (coreutils ${number})` : 'sha256sum';
}

const mbps = (bytesPerSecond: number) => bytesPerSecond / MB;

function printTransfer(transfer: TransferResult): void {
  const rate = transfer.bytes / transfer.transferSeconds;
  const three = formatters.fixed(3);
  const windows = transfer.windowRates.length
    ? `${mbps(Math.min(...transfer.windowRates)).toFixed(3)}–${mbps(Math.max(...transfer.windowRates)).toFixed(3)}`
    : undefined;
  printTable({
    title:
      `agent: token bucket through downloadResumable, ${formatters.integer(transfer.bytes)} B ` +
      'from 127.0.0.1 (MB = 10^6 B; MB/s: bytes / seconds from the call to the last byte ' +
      'written; steady: from the first write to the last; windows: slowest and fastest whole ' +
      `${WINDOW_SECONDS} s; call: with the final SHA-256 check)`,
    columns: [
      { header: 'seconds', format: three },
      { header: 'MB/s', format: formatters.fixed(4) },
      { header: 'steady MB/s', format: formatters.fixed(4) },
      { header: `${WINDOW_SECONDS} s windows MB/s` },
      { header: 'first bytes s', format: three },
      { header: 'call s', format: three },
    ],
    rows: [
      [
        `TokenBucket(${RATE}, ${BURST})`,
        transfer.transferSeconds,
        mbps(rate),
        mbps(transfer.steadyRate),
        windows,
        transfer.firstBytesSeconds,
        transfer.callSeconds,
      ],
      [LIMIT, transfer.bytes / RATE, mbps(RATE), mbps(RATE), undefined, undefined, undefined],
    ],
    ratios: [{ column: 'MB/s', baseline: LIMIT, header: 'rate / limit' }],
  });
}

function printHashes(hashes: HashRuns[]): void {
  const [tsx, bundled, sha256sum] = hashes as [HashRuns, HashRuns, HashRuns];
  const row = (name: string, seconds: number[], cpu?: number[]): [string, ...Cell[]] => [
    name,
    ...Array.from({ length: HASH_RUNS }, (_, index) => seconds[index]),
    median(seconds),
    cpu ? median(cpu) : undefined,
    SLOT_BYTES / MiB / median(seconds),
  ];
  const wall = (runs: HashRuns) => runs.runs.map((run) => run.wallSeconds);
  const cpu = (runs: HashRuns) => runs.runs.map((run) => run.cpuSeconds);
  const three = formatters.fixed(3);
  printTable({
    title:
      `agent: SHA-256 of a ${SLOT_BYTES / MiB} MiB file in the page cache (wall: spawn to exit, ` +
      'start-up included; in-process: sha256OfFile alone, timed inside the child runs above)',
    columns: [
      ...Array.from({ length: HASH_RUNS }, (_, index) => ({
        header: `run ${index + 1} s`,
        format: three,
      })),
      { header: 'median s', format: three },
      { header: 'CPU s', format: three },
      { header: 'MiB/s', format: formatters.integer },
    ],
    rows: [
      row(tsx.name, wall(tsx), cpu(tsx)),
      row(bundled.name, wall(bundled), cpu(bundled)),
      row('ours, in-process (hash only, tsx child)', tsx.hashSeconds ?? []),
      row('ours, in-process (hash only, bundled child)', bundled.hashSeconds ?? []),
      row(sha256sum.name, wall(sha256sum), cpu(sha256sum)),
    ],
    ratios: [{ column: 'median s', baseline: sha256sum.name, header: 'vs sha256sum' }],
  });
}

function printGoals(transfer: TransferResult, hashes: HashRuns[]): void {
  const [tsx, bundled, sha256sum] = hashes as [HashRuns, HashRuns, HashRuns];
  const rateRatio = transfer.bytes / transfer.transferSeconds / RATE;
  const medianWall = (runs: HashRuns) => median(runs.runs.map((run) => run.wallSeconds));
  const verdict = (met: boolean) => (met ? 'met' : 'MISSED');
  const hashRow = (label: string, ours: HashRuns): [string, ...Cell[]] => {
    const ratio = medianWall(ours) / medianWall(sha256sum);
    return [
      `SHA-256 of 256 MiB vs sha256sum, ${label}`,
      `${formatters.ratio(ratio)} (${medianWall(ours).toFixed(3)} / ${medianWall(sha256sum).toFixed(3)} s)`,
      `<= ${formatters.ratio(GOALS.hashVsSha256sum)}`,
      verdict(ratio <= GOALS.hashVsSha256sum),
    ];
  };
  printTable({
    title: 'agent: goals (issue 5)',
    columns: [{ header: 'measured' }, { header: 'goal' }, { header: 'result' }],
    rows: [
      [
        `token bucket over ${TRANSFER_SECONDS} s`,
        `${mbps(rateRatio * RATE).toFixed(4)} MB/s (${((rateRatio - 1) * 100).toFixed(2)}% off the limit)`,
        `within ${GOALS.rateTolerance * 100}% of ${RATE / MB} MB/s`,
        verdict(Math.abs(rateRatio - 1) <= GOALS.rateTolerance),
      ],
      hashRow('tsx child', tsx),
      hashRow('bundled child (as on the device)', bundled),
    ],
  });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await agentBench();
