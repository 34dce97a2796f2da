import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Two 256 MiB ext4 slot images built with `mke2fs -d`, deterministically, that differ as an
 * application release does: v2's 1 MiB bundle has a 4 KiB edit and grew by one block, so every
 * file allocated after it moves by 4 KiB. About 110 MB of content, the rest zeros.
 */

/** Bump when the trees or the mke2fs options change: the cached images are keyed by it. */
const RECIPE = 'ext4-pair-v1';
export const IMAGE_SIZE = 256 * 1024 * 1024;
const FIXED_TIME = 1_700_000_000;
const UUID = '5eed0000-0000-4000-8000-00000000de17';
const HASH_SEED = '5eed0000-0000-4000-8000-0000000005ed';
const BUNDLE_SIZE = 1024 * 1024;
const BLOCK = 4096;

export interface Ext4Pair {
  oldImage: string;
  newImage: string;
}

/** Builds the pair into `dir` unless it is there already. */
export function ext4Pair(dir: string): Ext4Pair {
  const oldImage = join(dir, `${RECIPE}-old.ext4`);
  const newImage = join(dir, `${RECIPE}-new.ext4`);
  if (!existsSync(oldImage) || !existsSync(newImage)) {
    const scratch = join(dir, `${RECIPE}.${process.pid}.tmp`);
    rmSync(scratch, { recursive: true, force: true });
    try {
      for (const [version, image] of [
        [1, oldImage],
        [2, newImage],
      ] as const) {
        const tree = join(scratch, `tree-v${version}`);
        writeTree(tree, version);
        const partial = join(scratch, `v${version}.ext4`);
        makeExt4(tree, partial);
        renameSync(partial, image);
      }
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  }
  return { oldImage, newImage };
}

function makeExt4(tree: string, image: string): void {
  execFileSync(
    'mke2fs',
    [
      '-q',
      '-F',
      '-t',
      'ext4',
      '-b',
      String(BLOCK),
      '-L',
      'rootfs',
      '-U',
      UUID,
      '-E',
      `hash_seed=${HASH_SEED},root_owner=0:0`,
      '-d',
      tree,
      image,
      `${IMAGE_SIZE / 1024}K`,
    ],
    { env: { ...process.env, E2FSPROGS_FAKE_TIME: String(FIXED_TIME) }, stdio: 'inherit' },
  );
}

/** A seeded PRNG (mulberry32): the same bytes on every machine. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** Machine-code-like bytes: instructions drawn from a small vocabulary, some with random operands. */
function codeLike(size: number, seed: number): Uint8Array {
  const random = prng(seed);
  const vocabulary: Uint8Array[] = [];
  for (let i = 0; i < 4096; i++) {
    const op = new Uint8Array(4 * (1 + (random() % 3)));
    for (let j = 0; j < op.length; j++) op[j] = random() & 0xff;
    vocabulary.push(op);
  }
  const out = new Uint8Array(size);
  let at = 0;
  while (at < size) {
    const r = random();
    const op = vocabulary[(r >>> 8) % (r & 1 ? 256 : 4096)]!;
    const n = Math.min(op.length, size - at);
    out.set(op.subarray(0, n), at);
    // One in four carries a fresh operand, as addresses and constants do.
    if ((r & 0x6) === 0 && n >= 4) out[at + n - 1] = random() & 0xff;
    at += n;
  }
  return out;
}

const WORDS =
  'const let function return if else for while await async import export default new this null undefined true false module require exports object string number value key index error result options config request response server route handler plugin schema status update slot delta image version board'.split(
    ' ',
  );

/** JavaScript-bundle-like text. */
function textLike(size: number, seed: number): Uint8Array {
  const random = prng(seed);
  let text = '';
  while (text.length < size) {
    const r = random();
    text += WORDS[r % WORDS.length]!;
    text += (r >>> 8) % 7 === 0 ? `${(r >>> 12) % 1000};\n` : (r >>> 8) % 3 === 0 ? '(' : ' ';
  }
  return new TextEncoder().encode(text.slice(0, size));
}

function writeTree(tree: string, version: 1 | 2): void {
  const files = new Map<string, Uint8Array>();
  let bundle = textLike(BUNDLE_SIZE, 11);
  if (version === 2) {
    const grown = new Uint8Array(BUNDLE_SIZE + BLOCK);
    grown.set(bundle);
    grown.set(textLike(BLOCK, 12), 512 * 1024); // the edit
    grown.set(textLike(BLOCK, 13), BUNDLE_SIZE); // and one block more
    bundle = grown;
  }
  // Names sort in allocation order: the bundle first, the big files after it.
  files.set('app/bundle.js', bundle);
  files.set('app/package.json', textLike(600, 21));
  for (let i = 0; i < 40; i++)
    files.set(`etc/conf-${String(i).padStart(2, '0')}.conf`, textLike(300 + i * 37, 100 + i));
  files.set('lib/libc.so.6', codeLike(2_000_000, 31));
  files.set('lib/libstdc++.so.6', codeLike(2_400_000, 32));
  files.set('lib/libssl.so.3', codeLike(700_000, 33));
  for (let i = 0; i < 12; i++)
    files.set(`modules/m${String(i).padStart(2, '0')}.wasm`, codeLike(180_000 + i * 5000, 200 + i));
  files.set('usr/bin/node', codeLike(100_000_000, 41));
  files.set('usr/share/licenses.txt', textLike(3_000_000, 42));

  const dirs = new Set<string>([tree]);
  for (const [name, content] of [...files].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const path = join(tree, name);
    for (let d = join(path, '..'); d.startsWith(tree); d = join(d, '..')) dirs.add(d);
    mkdirSync(join(path, '..'), { recursive: true });
    writeFileSync(path, content, { mode: name === 'usr/bin/node' ? 0o755 : 0o644 });
    utimesSync(path, FIXED_TIME, FIXED_TIME);
  }
  // Folders last and deepest first: writing into one changes its times.
  for (const dir of [...dirs].sort((a, b) => b.length - a.length))
    utimesSync(dir, FIXED_TIME, FIXED_TIME);
}
