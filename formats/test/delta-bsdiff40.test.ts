import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  Bzip2Reader,
  DeltaError,
  applyBsdiff40Delta,
  type DeltaErrorCode,
  encodeBsdiff40Header,
  makeBsdiff40Delta,
} from '@edge/formats';

const scratchDirs: string[] = [];
const scratch = () => {
  const dir = mkdtempSync(join(tmpdir(), 'delta-test-'));
  scratchDirs.push(dir);
  return dir;
};
test.after.always(() => {
  for (const dir of scratchDirs) rmSync(dir, { recursive: true, force: true });
});
const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');

/** Seeded bytes (mulberry32), so a failure can be rerun. */
function seeded(size: number, seed: number, alphabet = 256): Uint8Array {
  let state = seed >>> 0;
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++) {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    out[i] = ((t ^ (t >>> 14)) >>> 0) % alphabet;
  }
  return out;
}

const concat = (...parts: Uint8Array[]) => new Uint8Array(Buffer.concat(parts));

/**
 * Old and new files of every shape the generator must handle. Tens of KiB each: the shapes,
 * not the sizes, are what these tests are about (big inputs are in bench/).
 */
const pairs: Record<string, () => [Uint8Array, Uint8Array]> = {
  identical: () => {
    const data = seeded(75_000, 1);
    return [data, data];
  },
  'empty old': () => [new Uint8Array(0), seeded(25_000, 2)],
  'empty new': () => [seeded(25_000, 3), new Uint8Array(0)],
  'both empty': () => [new Uint8Array(0), new Uint8Array(0)],
  'unrelated random': () => [seeded(50_000, 4), seeded(62_500, 5)],
  'shifted by an insertion': () => {
    const old = seeded(125_000, 6);
    return [
      old,
      concat(seeded(777, 7), old.subarray(0, 62_500), seeded(4096, 8), old.subarray(62_500)),
    ];
  },
  'zero runs': () => {
    const zeros = new Uint8Array(100_000);
    const old = concat(seeded(12_500, 9), zeros, seeded(12_500, 10), zeros.subarray(0, 25_000));
    const neu = concat(
      seeded(12_500, 9),
      zeros.subarray(0, 4096),
      seeded(12_500, 10),
      zeros,
      seeded(10, 11),
    );
    return [old, neu];
  },
  'scattered small edits': () => {
    const old = seeded(100_000, 12, 16);
    const neu = old.slice();
    for (let i = 100; i < neu.length; i += 997) neu[i] = (neu[i]! + 1) & 0xff;
    return [old, neu];
  },
  'blocks moved around': () => {
    const blocks = Array.from({ length: 64 }, (_, i) => seeded(2048, 100 + i, 40));
    const moved = [...blocks].reverse();
    moved[10] = seeded(2048, 999, 40);
    return [concat(...blocks), concat(...moved)];
  },
  'text edit': () => {
    const words = 'const let function return value key index error result options'.split(' ');
    const text = (n: number, seed: number) =>
      new TextEncoder().encode(
        Array.from(seeded(n, seed), (b) => words[b % words.length]).join(' '),
      );
    const old = text(15_000, 13);
    return [old, concat(old.subarray(0, 50_000), text(200, 14), old.subarray(50_250))];
  },
};

/** Each pair is made once per file: several tests read the same one. */
const madePairs = new Map<string, [Uint8Array, Uint8Array]>();
function pair(name: string): [Uint8Array, Uint8Array] {
  let made = madePairs.get(name);
  if (!made) {
    made = pairs[name]!();
    madePairs.set(name, made);
  }
  return made;
}

function writePair(dir: string, [old, neu]: [Uint8Array, Uint8Array]) {
  const oldPath = join(dir, 'old');
  const newPath = join(dir, 'new');
  writeFileSync(oldPath, old);
  writeFileSync(newPath, neu);
  return { oldPath, newPath, old, neu };
}

/** A pair in its own folder with the delta our generator makes of it, made once per file. */
const deltas = new Map<string, ReturnType<typeof makeDelta>>();
function deltaOf(name: string): ReturnType<typeof makeDelta> {
  let delta = deltas.get(name);
  if (!delta) {
    delta = makeDelta(name);
    deltas.set(name, delta);
  }
  return delta;
}

async function makeDelta(name: string) {
  const dir = scratch();
  const files = writePair(dir, pair(name));
  const patch = join(dir, 'patch');
  const phases: string[] = [];
  const made = await makeBsdiff40Delta(files.oldPath, files.newPath, patch, {
    onProgress: (p) => phases.push(p.phase),
  });
  return { ...files, dir, patch, made, phases };
}

for (const name of Object.keys(pairs)) {
  test(`round trip, ${name}: our delta rebuilds the new file with stock bspatch and with ours`, async (t) => {
    const { dir, oldPath, neu, patch, made, phases } = await deltaOf(name);
    t.is(made.newSize, neu.length);
    t.is(made.patchSize, statSync(patch).size);
    t.true(phases.includes('match'));

    execFileSync('bspatch', [oldPath, join(dir, 'by-bspatch'), patch]);
    t.is(sha256(readFileSync(join(dir, 'by-bspatch'))), sha256(neu), 'stock bspatch');

    const done: number[] = [];
    const applied = await applyBsdiff40Delta({
      oldPath,
      patchPath: patch,
      newPath: join(dir, 'by-us'),
      newSize: neu.length,
      onProgress: (p) => done.push(p.bytesDone),
    });
    t.is(applied.newSize, neu.length);
    t.is(sha256(readFileSync(join(dir, 'by-us'))), sha256(neu), 'our applier');
    if (neu.length > 0) t.is(done.at(-1), neu.length);
  });
}

test('deltas from Debian bsdiff apply with our applier', async (t) => {
  for (const name of [
    'shifted by an insertion',
    'scattered small edits',
    'zero runs', // (Debian's bsdiff cannot mmap an empty file)
    'text edit',
  ]) {
    const dir = scratch();
    const { oldPath, newPath, neu } = writePair(dir, pair(name));
    const patch = join(dir, 'patch');
    execFileSync('bsdiff', [oldPath, newPath, patch]);
    await applyBsdiff40Delta({ oldPath, patchPath: patch, newPath: join(dir, 'out') });
    t.is(sha256(readFileSync(join(dir, 'out'))), sha256(neu), name);
  }
});

test('the generator finds a shifted copy: the delta is small', async (t) => {
  const { made } = await deltaOf('shifted by an insertion');
  // 4,873 new random bytes cannot compress; everything else is found in old.
  t.true(made.patchSize < 6_000, `patch is ${made.patchSize} bytes`);
});

test('an aborted signal stops the applier with its reason, not a DeltaError', async (t) => {
  const { oldPath, patch } = await deltaOf('shifted by an insertion');
  const controller = new AbortController();
  const stopping = new Error('stopping');
  let writes = 0;
  await t.throwsAsync(
    applyBsdiff40Delta({
      oldPath,
      patchPath: patch,
      newPath: join(scratch(), 'out'),
      signal: controller.signal,
      onProgress: () => {
        if (++writes === 1) controller.abort(stopping);
      },
    }),
    { is: stopping },
  );
  t.is(writes, 1, 'no write after the abort');
});

test('the applier writes into an open file at an offset (a slot partition)', async (t) => {
  const { oldPath, neu, patch } = await deltaOf('shifted by an insertion');
  const device = join(scratch(), 'device');
  const before = seeded(neu.length + 8192, 77);
  writeFileSync(device, before);
  const handle = await open(device, 'r+');
  try {
    await applyBsdiff40Delta({
      oldPath,
      patchPath: patch,
      newFd: handle,
      newOffset: 4096,
      sync: true,
    });
  } finally {
    await handle.close();
  }
  const after = readFileSync(device);
  t.is(sha256(after.subarray(0, 4096)), sha256(before.subarray(0, 4096)), 'before the offset');
  t.is(sha256(after.subarray(4096, 4096 + neu.length)), sha256(neu));
  t.is(sha256(after.subarray(4096 + neu.length)), sha256(before.subarray(4096 + neu.length)));
});

// ---- the bzip2 reader ----

/** Each input compressed by bzip2 at `level`: one process for all (bzip2 -k takes many files). */
function bzip2Each(inputs: Uint8Array[], level = '-9'): Uint8Array[] {
  const dir = scratch();
  const files = inputs.map((input, index) => {
    const file = join(dir, String(index));
    writeFileSync(file, input);
    return file;
  });
  execFileSync('bzip2', [level, '-k', ...files]);
  return files.map((file) => new Uint8Array(readFileSync(`${file}.bz2`)));
}

test('the bzip2 reader decodes what bzip2 wrote, in any read sizes, across blocks', async (t) => {
  const dir = scratch();
  const inputs = {
    random: seeded(150_000, 20),
    text: new TextEncoder().encode('hello bzip2 '.repeat(40_000)),
    zeros: new Uint8Array(1_000_000),
    runs: concat(new Uint8Array(300).fill(7), seeded(5, 21), new Uint8Array(1000).fill(7)),
    empty: new Uint8Array(0),
    one: new Uint8Array([42]),
  };
  for (const level of ['-1', '-9']) {
    const streams = bzip2Each(Object.values(inputs), level);
    for (const [index, [name, data]] of Object.entries(inputs).entries()) {
      const compressed = streams[index]!;
      const path = join(dir, `${name}${level}.bz2`);
      writeFileSync(path, concat(seeded(13, 1), compressed, seeded(7, 2)));
      const handle = await open(path, 'r');
      try {
        const reader = new Bzip2Reader(handle, 13, 13 + compressed.length, name);
        const out = new Uint8Array(data.length + 10);
        let at = 0;
        for (let step = 1; ; step = (step * 7 + 3) % 70_001) {
          const n = await reader.read(out, at, Math.min(step, out.length - at));
          if (n === 0) break;
          at += n;
        }
        t.is(at, data.length, `${name} ${level}: length`);
        t.is(sha256(out.subarray(0, at)), sha256(data), `${name} ${level}`);
      } finally {
        await handle.close();
      }
    }
  }
});

// ---- bad deltas ----

function offtout(value: number): Uint8Array {
  const bytes = new Uint8Array(8);
  let magnitude = Math.abs(value);
  for (let i = 0; i < 8; i++) {
    bytes[i] = magnitude % 256;
    magnitude = Math.floor(magnitude / 256);
  }
  if (value < 0) bytes[7]! |= 0x80;
  return bytes;
}

/** A patch built by hand from control triples, diff and extra bytes. */
function handMadePatch(triples: number[][], diff: Uint8Array, extra: Uint8Array, newSize: number) {
  const [control, diffBlock, extraBlock] = bzip2Each([
    concat(...triples.flat().map(offtout)),
    diff,
    extra,
  ]);
  const header = encodeBsdiff40Header({
    controlLength: control!.length,
    diffLength: diffBlock!.length,
    newSize,
  });
  return concat(header, control!, diffBlock!, extraBlock!);
}

async function refused(
  t: ExecutionContext,
  patch: Uint8Array,
  code: DeltaErrorCode,
  message: RegExp,
  old = seeded(10_000, 30),
) {
  const dir = scratch();
  writeFileSync(join(dir, 'old'), old);
  writeFileSync(join(dir, 'patch'), patch);
  const error = await t.throwsAsync(
    applyBsdiff40Delta({
      oldPath: join(dir, 'old'),
      patchPath: join(dir, 'patch'),
      newPath: join(dir, 'new'),
    }),
    { instanceOf: DeltaError, message },
  );
  t.is(error?.code, code);
  return join(dir, 'new');
}

test('a hand-made patch applies (the test helper is right)', async (t) => {
  const dir = scratch();
  const old = seeded(1000, 31);
  writeFileSync(join(dir, 'old'), old);
  const patch = handMadePatch(
    [
      [10, 3, 5],
      [4, 0, 0],
    ],
    new Uint8Array(14).fill(1),
    seeded(3, 32),
    17,
  );
  writeFileSync(join(dir, 'patch'), patch);
  execFileSync('bspatch', [join(dir, 'old'), join(dir, 'stock'), join(dir, 'patch')]);
  await applyBsdiff40Delta({
    oldPath: join(dir, 'old'),
    patchPath: join(dir, 'patch'),
    newPath: join(dir, 'ours'),
  });
  t.is(sha256(readFileSync(join(dir, 'ours'))), sha256(readFileSync(join(dir, 'stock'))));
});

test('bad magic is refused', async (t) => {
  const patch = handMadePatch([[0, 4, 0]], new Uint8Array(0), seeded(4, 33), 4);
  patch.set(new TextEncoder().encode('BSDIFF41'), 0);
  await refused(t, patch, 'BAD_MAGIC', /not a BSDIFF40 delta/);
});

test('a file shorter than the header is refused', async (t) => {
  await refused(t, new TextEncoder().encode('BSDIFF40'), 'TRUNCATED', /shorter than its header/);
});

test('header lengths past the end of the delta are refused', async (t) => {
  const patch = handMadePatch([[0, 4, 0]], new Uint8Array(0), seeded(4, 34), 4);
  patch.set(offtout(1 << 30), 16);
  await refused(t, patch, 'TRUNCATED', /end at byte/);
  patch.set(offtout(-5), 16);
  await refused(t, patch, 'BAD_HEADER', /negative length/);
});

test('a truncated delta is refused, at every cut', async (t) => {
  const { old, patch } = await deltaOf('text edit');
  const whole = readFileSync(patch);
  for (const cut of [40, Math.floor(whole.length / 2), whole.length - 30, whole.length - 1]) {
    await refused(
      t,
      whole.subarray(0, cut),
      'TRUNCATED',
      /ends early|cut short|end at byte|in the middle of/,
      old,
    );
  }
});

test('a corrupt diff stream fails its bzip2 check', async (t) => {
  const diff = seeded(50_000, 35);
  const patch = handMadePatch([[50_000, 0, 0]], diff, new Uint8Array(0), 50_000);
  const controlLength = patch[8]! + 256 * patch[9]!;
  // Flip a bit well inside the diff stream's first block: its CRC (or its Huffman codes) fail.
  patch[32 + controlLength + 20_000]! ^= 0x10;
  const dir = scratch();
  writeFileSync(join(dir, 'old'), seeded(60_000, 36));
  writeFileSync(join(dir, 'patch'), patch);
  const error = await t.throwsAsync(
    applyBsdiff40Delta({
      oldPath: join(dir, 'old'),
      patchPath: join(dir, 'patch'),
      newPath: join(dir, 'new'),
    }),
    { instanceOf: DeltaError, message: /diff stream: (block CRC mismatch|corrupt bzip2 data)/ },
  );
  t.true(error?.code === 'BZIP2_CRC' || error?.code === 'BZIP2_CORRUPT', error?.code);
  t.is(statSync(join(dir, 'new')).size, 0, 'nothing of the bad block was written');
});

test('a control triple reading outside the old file is refused', async (t) => {
  const newPath = await refused(
    t,
    handMadePatch(
      [
        [100, 0, 20_000],
        [100, 0, 0],
      ],
      new Uint8Array(200),
      new Uint8Array(0),
      200,
    ),
    'OLD_RANGE',
    /outside the old file/,
  );
  t.is(statSync(newPath).size, 100, 'the first triple was written, nothing after it');
  await refused(
    t,
    handMadePatch(
      [
        [100, 0, -500],
        [100, 0, 0],
      ],
      new Uint8Array(200),
      new Uint8Array(0),
      200,
    ),
    'OLD_RANGE',
    /outside the old file/,
  );
});

test('a delta writing past its new size is refused before it writes', async (t) => {
  const newPath = await refused(
    t,
    handMadePatch([[100, 50, 0]], new Uint8Array(100), seeded(50, 37), 120),
    'NEW_SIZE_EXCEEDED',
    /past the new size 120/,
  );
  t.is(statSync(newPath).size, 0);
});

test('a negative length in a control triple is refused', async (t) => {
  await refused(
    t,
    handMadePatch([[-1, 5, 0]], new Uint8Array(0), seeded(5, 38), 5),
    'BAD_CONTROL',
    /negative/,
  );
});

test('a delta for another new size than expected is refused before anything is written', async (t) => {
  const { oldPath, patch } = await deltaOf('zero runs');
  await t.throwsAsync(
    applyBsdiff40Delta({
      oldPath,
      patchPath: patch,
      newPath: join(scratch(), 'out'),
      newSize: 5,
    }),
    { instanceOf: DeltaError, message: /expected 5/ },
  );
});

test('a patch whose control stream ends early is refused', async (t) => {
  const patch = handMadePatch([[10, 0, 0]], new Uint8Array(10), new Uint8Array(0), 20);
  await refused(t, patch, 'TRUNCATED', /control stream ended/);
});
