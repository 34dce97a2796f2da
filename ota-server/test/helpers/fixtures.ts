import type { ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import type { DeltaMaker } from '../../src/publish/delta-maker.js';
import { addTargets, initRepository } from '../../src/tuf/index.js';

/** A temporary folder removed when the test ends, or by the caller when `t` is null. */
export async function tempDir(t: ExecutionContext | null, label: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `ota-${label}-`));
  t?.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A real ext4 slot image made by mke2fs -d from a small tree (deterministic enough for tests). */
export async function ext4Image(
  dir: string,
  name: string,
  files: Record<string, string>,
  sizeKiB = 1024,
): Promise<string> {
  const tree = join(dir, `${name}.tree`);
  await mkdir(tree, { recursive: true });
  for (const [path, content] of Object.entries(files)) await writeFile(join(tree, path), content);
  const image = join(dir, name);
  execFileSync('mke2fs', ['-q', '-F', '-t', 'ext4', '-d', tree, image, `${sizeKiB}K`], {
    env: { ...process.env, E2FSPROGS_FAKE_TIME: '1700000000' },
    stdio: 'pipe',
  });
  return image;
}

export async function newRepository(t: ExecutionContext | null): Promise<string> {
  const repo = join(await tempDir(t, 'repo'), 'repo');
  await initRepository(repo);
  return repo;
}

/** Publishes an image straight through the TUF library (no checks, no deltas). */
export async function publishImage(
  repo: string,
  board: string,
  version: string,
  path: string,
): Promise<void> {
  await addTargets(repo, [{ kind: 'image', board, version, path }]);
}

/** A stand-in delta: names both inputs' hashes, so tests can tell which pair it came from. */
export const fakeDeltaMaker: DeltaMaker = async (oldPath, newPath, outPath, onProgress) => {
  const hash = async (path: string) =>
    createHash('sha256')
      .update(await readFile(path))
      .digest('hex');
  onProgress({ bytesDone: 0, bytesTotal: 2 });
  const text = `fake delta ${await hash(oldPath)} -> ${await hash(newPath)}\n`;
  onProgress({ bytesDone: 2, bytesTotal: 2 });
  await writeFile(outPath, text);
};

/** Every file under `dir` with its SHA-256: "the repository as it was". */
export async function treeDigest(dir: string): Promise<Record<string, string>> {
  const tree: Record<string, string> = {};
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    tree[relative(dir, path)] = createHash('sha256')
      .update(await readFile(path))
      .digest('hex');
  }
  return tree;
}

export function sha256(bytes: Uint8Array | string): string {
  return createHash('sha256').update(bytes).digest('hex');
}
