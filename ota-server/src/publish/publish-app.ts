import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, lstat, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative, sep } from 'node:path';
import {
  APP_INDEX_FORMAT,
  appIndexTargetName,
  checkAppFilePath,
  encodeAppIndex,
  type AppIndexFile,
} from '@edge/formats';
import { publishedApps } from '../repository/published-apps.js';
import {
  addTargets,
  type AddTargetsResult,
  type NewTarget,
  type OperationOptions,
} from '../tuf/index.js';
import { PublishError } from './errors.js';
import { checkBoardAndVersion, checkNewer } from './release-version.js';
import { newestFirst } from './semver.js';

export interface PublishAppOptions {
  repoDir: string;
  board: string;
  version: string;
  /** The release's folder: modules/<name>/{manifest.json,<name>.wasm} and config files. */
  folder: string;
  /** Where the index is written before it is added (default: the system's temp folder). */
  workDir?: string;
  tuf?: OperationOptions;
}

export interface PublishAppResult extends AddTargetsResult {
  indexTarget: string;
  files: AppIndexFile[];
}

/**
 * Publishes an app release of a board: every file of the folder becomes a target
 * `<board>/apps/<version>/<path>`, and an index `<board>/apps/<version>/app.json` lists them,
 * all in one addTargets call, so a refusal or a failure leaves the repository as it was.
 */
export async function publishAppRelease(options: PublishAppOptions): Promise<PublishAppResult> {
  const { repoDir, board, version, folder } = options;
  const indexTarget = checkBoardAndVersion(version, () => appIndexTargetName(board, version));
  checkNewer('app release', board, version, newestFirst(await publishedApps(repoDir, board))[0]);
  const found = await releaseFiles(folder);

  const workDir = await mkdtemp(join(options.workDir ?? tmpdir(), 'ota-publish-app-'));
  try {
    // Indexed and published from one copy: a file changed meanwhile cannot differ between them.
    const sources: Array<{ path: string; absolute: string }> = [];
    const files: AppIndexFile[] = [];
    for (const [position, file] of found.entries()) {
      const copy = join(workDir, `file-${position}`);
      await copyFile(file.absolute, copy);
      sources.push({ path: file.path, absolute: copy });
      files.push({ path: file.path, ...(await lengthAndSha256(copy)) });
    }
    const indexPath = join(workDir, 'app.json');
    await writeFile(indexPath, encodeAppIndex({ format: APP_INDEX_FORMAT, board, version, files }));
    const targets: NewTarget[] = [
      ...sources.map((source): NewTarget => ({
        kind: 'app-file',
        board,
        appVersion: version,
        filePath: source.path,
        path: source.absolute,
      })),
      { kind: 'app', board, appVersion: version, path: indexPath },
    ];
    const result = await addTargets(repoDir, targets, options.tuf);
    return { ...result, indexTarget, files };
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}

/** The regular files under the folder, sorted; symlinks and other kinds are refused. */
async function releaseFiles(folder: string): Promise<Array<{ path: string; absolute: string }>> {
  const info = await lstat(folder).catch(() => undefined);
  if (!info?.isDirectory()) {
    throw new PublishError('APP_FOLDER_INVALID', `${folder}: not a folder`);
  }
  const entries = await readdir(folder, { recursive: true, withFileTypes: true });
  const files: Array<{ path: string; absolute: string }> = [];
  for (const entry of entries) {
    const absolute = join(entry.parentPath, entry.name);
    const path = relative(folder, absolute).split(sep).join('/');
    if (entry.isDirectory()) continue;
    if (!entry.isFile()) {
      throw new PublishError(
        'APP_FOLDER_INVALID',
        `${path}: ${entry.isSymbolicLink() ? 'a symlink' : 'not a regular file'}; an app release holds regular files only`,
      );
    }
    try {
      checkAppFilePath(path);
    } catch (error) {
      throw new PublishError('APP_FOLDER_INVALID', (error as Error).message);
    }
    files.push({ path, absolute });
  }
  if (files.length === 0) {
    throw new PublishError('APP_FOLDER_INVALID', `${folder}: no files to publish`);
  }
  return files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

async function lengthAndSha256(path: string): Promise<{ length: number; sha256: string }> {
  const hash = createHash('sha256');
  let length = 0;
  for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) {
    hash.update(chunk);
    length += chunk.length;
  }
  return { length, sha256: hash.digest('hex') };
}
