import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ext4Pair } from './delta/ext4-pair.js';
import { benchCacheDir } from './lib/go-build.js';
import { MiB, measureRun, type RunMeasurement } from './lib/measure.js';
import { formatters, printTable, type Cell } from './lib/table.js';

/**
 * BSDIFF40 deltas between two 256 MiB ext4 slot images (one app file changed, later files
 * shifted by a block): our generator and applier against Debian's bsdiff/bspatch 4.3,
 * HDiffPatch (when HDIFFZ/HPATCHZ name its binaries), xdelta3 and zstd, in one run.
 */

const BSDIFF_TIMEOUT_S = Number(process.env.BENCH_BSDIFF_TIMEOUT ?? 300);
const GOALS = {
  patchVsBsdiff: 1.05,
  generationSpeedupVsBsdiff: 10,
  generationPeakRss: 1024 * MiB,
  applyRssAboveIdle: 64 * MiB,
  applyTimeVsBspatch: 2,
};

const node = process.execPath;
const tsx = ['--import', 'tsx'];
const script = (name: string) => fileURLToPath(new URL(`delta/${name}`, import.meta.url));

interface Row {
  name: string;
  run?: RunMeasurement;
  patchBytes?: number;
  /** Why there is no measurement, or that the run was stopped. */
  note?: string;
  verified?: boolean;
}

async function sha256OfFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

const has = (command: string) => {
  try {
    execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};

export default async function deltaBench(): Promise<void> {
  const cache = join(benchCacheDir(), 'delta');
  mkdirSync(cache, { recursive: true });
  process.stdout.write('delta: building (or reusing) the ext4 pair...\n');
  const { oldImage, newImage } = ext4Pair(cache);
  const newHash = await sha256OfFile(newImage);
  const work = mkdtempSync(join(tmpdir(), 'delta-bench-'));
  const out = (name: string) => join(work, name);
  const sizeOf = (path: string) => (existsSync(path) ? statSync(path).size : undefined);
  const verify = async (path: string) => existsSync(path) && (await sha256OfFile(path)) === newHash;

  const make: Row[] = [];
  const apply: Row[] = [];
  try {
    // Ours.
    const ours = await measureRun(node, [
      ...tsx,
      script('make-delta.ts'),
      oldImage,
      newImage,
      out('ours.bsdiff'),
    ]);
    make.push({ name: 'ours (BSDIFF40)', run: ours, patchBytes: sizeOf(out('ours.bsdiff')) });

    // Debian's bsdiff 4.3, niced, with a deadline: its suffix sort degrades on long zero runs.
    const bsdiff = await measureRun('timeout', [
      String(BSDIFF_TIMEOUT_S),
      'nice',
      '-n',
      '10',
      'bsdiff',
      oldImage,
      newImage,
      out('bsdiff43.bsdiff'),
    ]);
    const bsdiffStopped = bsdiff.exitCode === 124;
    make.push({
      name: 'bsdiff 4.3',
      run: bsdiff,
      patchBytes: bsdiffStopped ? undefined : sizeOf(out('bsdiff43.bsdiff')),
      note: bsdiffStopped ? `>${BSDIFF_TIMEOUT_S} s (stopped)` : undefined,
    });

    const hdiffz = process.env.HDIFFZ;
    if (hdiffz && existsSync(hdiffz)) {
      const run = await measureRun(
        hdiffz,
        ['-BSD', '-m', '-p-1', '-f', oldImage, newImage, out('hdiffz.bsdiff')],
        {
          stdio: ['ignore', 'ignore', 'inherit'],
        },
      );
      make.push({ name: 'hdiffz -BSD -m -p-1', run, patchBytes: sizeOf(out('hdiffz.bsdiff')) });
    } else {
      make.push({ name: 'hdiffz -BSD -m', note: 'skipped: set HDIFFZ to its binary' });
    }
    if (has('xdelta3')) {
      const run = await measureRun('xdelta3', [
        '-9',
        '-e',
        '-f',
        '-s',
        oldImage,
        newImage,
        out('x.vcdiff'),
      ]);
      make.push({ name: 'xdelta3 -9', run, patchBytes: sizeOf(out('x.vcdiff')) });
    }
    if (has('zstd')) {
      const run = await measureRun('zstd', [
        '-q',
        '-f',
        '-19',
        '--long=28',
        `--patch-from=${oldImage}`,
        newImage,
        '-o',
        out('z.zst'),
      ]);
      make.push({ name: 'zstd -19 --long=28 --patch-from', run, patchBytes: sizeOf(out('z.zst')) });
    }

    // Apply. Our patch goes to both appliers: stock bspatch must take it anyway.
    const idle = await measureRun(node, [...tsx, script('apply-delta.ts')]);
    apply.push({ name: 'node + applier loaded, idle', run: idle });
    const ourApply = await measureRun(node, [
      ...tsx,
      script('apply-delta.ts'),
      oldImage,
      out('ours.bsdiff'),
      out('new.ours'),
    ]);
    apply.push({
      name: 'ours (our patch)',
      run: ourApply,
      verified: await verify(out('new.ours')),
    });
    rmSync(out('new.ours'), { force: true });
    const bspatch = await measureRun('bspatch', [oldImage, out('new.bspatch'), out('ours.bsdiff')]);
    apply.push({
      name: 'bspatch 4.3 (our patch)',
      run: bspatch,
      verified: await verify(out('new.bspatch')),
    });
    rmSync(out('new.bspatch'), { force: true });
    if (existsSync(out('bsdiff43.bsdiff')) && !bsdiffStopped) {
      const run = await measureRun(node, [
        ...tsx,
        script('apply-delta.ts'),
        oldImage,
        out('bsdiff43.bsdiff'),
        out('new.b'),
      ]);
      apply.push({ name: "ours (bsdiff 4.3's patch)", run, verified: await verify(out('new.b')) });
      rmSync(out('new.b'), { force: true });
    }
    const hpatchz = process.env.HPATCHZ;
    if (hpatchz && existsSync(hpatchz) && existsSync(out('hdiffz.bsdiff'))) {
      const run = await measureRun(
        hpatchz,
        ['-s-1m', '-f', oldImage, out('hdiffz.bsdiff'), out('new.h')],
        {
          stdio: ['ignore', 'ignore', 'inherit'],
        },
      );
      apply.push({ name: 'hpatchz -s-1m (its patch)', run, verified: await verify(out('new.h')) });
      const ourRun = await measureRun(node, [
        ...tsx,
        script('apply-delta.ts'),
        oldImage,
        out('hdiffz.bsdiff'),
        out('new.h'),
      ]);
      apply.push({
        name: "ours (hdiffz's patch)",
        run: ourRun,
        verified: await verify(out('new.h')),
      });
      rmSync(out('new.h'), { force: true });
    } else {
      apply.push({ name: 'hpatchz', note: 'skipped: set HPATCHZ (and HDIFFZ)' });
    }
    if (existsSync(out('x.vcdiff'))) {
      const run = await measureRun('xdelta3', [
        '-d',
        '-f',
        '-s',
        oldImage,
        out('x.vcdiff'),
        out('new.x'),
      ]);
      apply.push({ name: 'xdelta3 -d', run, verified: await verify(out('new.x')) });
      rmSync(out('new.x'), { force: true });
    }
    if (existsSync(out('z.zst'))) {
      const run = await measureRun('zstd', [
        '-q',
        '-d',
        '-f',
        '--long=28',
        `--patch-from=${oldImage}`,
        out('z.zst'),
        '-o',
        out('new.z'),
      ]);
      apply.push({ name: 'zstd -d --patch-from', run, verified: await verify(out('new.z')) });
      rmSync(out('new.z'), { force: true });
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }

  const seconds = formatters.fixed(2);
  const mib = (value: number) => (value / MiB).toFixed(0);
  const cells = (row: Row): Cell[] => [
    row.note ?? (row.run ? seconds(row.run.cpuSeconds) : undefined),
    row.run ? seconds(row.run.wallSeconds) : undefined,
    row.run ? mib(row.run.peakRssBytes) : undefined,
    row.patchBytes,
  ];
  printTable({
    title: `Delta generation, 256 MiB ext4 pair (${(statSync(oldImage).size / MiB).toFixed(0)} MiB, app bundle edited, later files shifted one block)`,
    columns: [
      { header: 'CPU s' },
      { header: 'wall s' },
      { header: 'peak RSS MiB' },
      { header: 'patch B', format: formatters.integer },
    ],
    rows: make.map((row) => [row.name, ...cells(row)] as const),
  });
  printTable({
    title: 'Delta apply, same pair (output checked against the new image)',
    columns: [
      { header: 'CPU s' },
      { header: 'wall s' },
      { header: 'peak RSS MiB' },
      { header: 'output' },
    ],
    rows: apply.map(
      (row) =>
        [
          row.name,
          ...cells(row).slice(0, 3),
          row.verified === undefined ? '' : row.verified ? 'ok' : 'WRONG',
        ] as const,
    ),
  });

  // Goals.
  const find = (rows: Row[], name: string) => rows.find((row) => row.name === name);
  const ours = find(make, 'ours (BSDIFF40)')!;
  const bsdiff = find(make, 'bsdiff 4.3')!;
  const hdiff = make.find((row) => row.name.startsWith('hdiffz') && row.patchBytes !== undefined);
  const ourApply = find(apply, 'ours (our patch)')!;
  const bspatch = find(apply, 'bspatch 4.3 (our patch)')!;
  const idle = find(apply, 'node + applier loaded, idle')!;
  const verdict = (met: boolean) => (met ? 'met' : 'MISSED');
  const lines: string[] = [];
  if (bsdiff.patchBytes !== undefined && ours.patchBytes !== undefined) {
    const ratio = ours.patchBytes / bsdiff.patchBytes;
    lines.push(
      `patch vs bsdiff 4.3: ${ratio.toFixed(3)}x (goal <= ${GOALS.patchVsBsdiff}x): ${verdict(ratio <= GOALS.patchVsBsdiff)}`,
    );
  } else {
    lines.push('patch vs bsdiff 4.3: bsdiff 4.3 gave no patch in time, no ratio');
  }
  if (hdiff?.patchBytes !== undefined && ours.patchBytes !== undefined) {
    lines.push(
      `patch vs hdiffz (the peer to beat): ${(ours.patchBytes / hdiff.patchBytes).toFixed(3)}x`,
    );
  }
  if (ours.run && bsdiff.run) {
    const speedup = bsdiff.run.cpuSeconds / ours.run.cpuSeconds;
    const floor = bsdiff.note ? '>' : '';
    lines.push(
      `generation CPU vs bsdiff 4.3: ${floor}${speedup.toFixed(1)}x faster (goal >= ${GOALS.generationSpeedupVsBsdiff}x): ${verdict(speedup >= GOALS.generationSpeedupVsBsdiff)}`,
    );
  }
  if (ours.run) {
    lines.push(
      `generation peak RSS: ${mib(ours.run.peakRssBytes)} MiB (goal < ${mib(GOALS.generationPeakRss)} MiB): ${verdict(ours.run.peakRssBytes < GOALS.generationPeakRss)}`,
    );
  }
  if (ourApply.run && idle.run) {
    const above = ourApply.run.peakRssBytes - idle.run.peakRssBytes;
    lines.push(
      `apply peak RSS above idle: ${mib(above)} MiB (goal <= ${mib(GOALS.applyRssAboveIdle)} MiB): ${verdict(above <= GOALS.applyRssAboveIdle)}`,
    );
  }
  if (ourApply.run && bspatch.run && idle.run) {
    // Node and tsx start-up is not the applier's: take the idle process's wall time off.
    const ratio = (ourApply.run.wallSeconds - idle.run.wallSeconds) / bspatch.run.wallSeconds;
    lines.push(
      `apply wall vs bspatch 4.3 (start-up excluded): ${ratio.toFixed(2)}x (goal <= ${GOALS.applyTimeVsBspatch}x): ${verdict(ratio <= GOALS.applyTimeVsBspatch)}`,
    );
  }
  process.stdout.write(`Goals\n${lines.map((line) => `  ${line}`).join('\n')}\n\n`);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await deltaBench();
