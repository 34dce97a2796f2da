import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Where benchmarks keep what they build, outside the checkout, across runs. */
export function benchCacheDir(): string {
  const root = process.env.EDGE_CACHE || join(homedir(), '.cache', 'edge-firmware');
  const dir = join(root, 'bench');
  mkdirSync(dir, { recursive: true });
  return dir;
}

/**
 * Builds a Go peer (a folder with go.mod and its .go files, standard library only) with the
 * host's `go`, once per source and toolchain: the binary is kept in the bench cache, keyed by
 * their hash. Returns undefined when `go` is missing, for the caller to say it skipped the peer.
 */
export async function buildGoPeer(sourceDir: string): Promise<string | undefined> {
  const goVersion = await run('go', ['version']).then(
    ({ stdout }) => stdout.trim(),
    () => undefined,
  );
  if (goVersion === undefined) return undefined;

  const key = createHash('sha256').update(goVersion);
  for (const file of readdirSync(sourceDir).sort()) {
    if (file === 'go.mod' || file.endsWith('.go'))
      key.update(file).update(readFileSync(join(sourceDir, file)));
  }
  const binary = join(benchCacheDir(), `${basename(sourceDir)}-${key.digest('hex').slice(0, 16)}`);
  if (existsSync(binary)) return binary;

  const partial = `${binary}.${process.pid}.partial`;
  // Standard library only: never reach for the module proxy.
  await run('go', ['build', '-trimpath', '-o', partial, '.'], {
    cwd: sourceDir,
    env: { ...process.env, GOPROXY: 'off', GOFLAGS: '-mod=mod', CGO_ENABLED: '0' },
  });
  renameSync(partial, binary);
  return binary;
}
