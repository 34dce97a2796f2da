import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { publishedImages } from '../repository/published-images.js';
import {
  addTargets,
  deltaTargetName,
  imageTargetName,
  type AddTargetsResult,
  type NewTarget,
  type OperationOptions,
} from '../tuf/index.js';
import { defaultDeltaMaker, type DeltaMaker, type DeltaProgress } from './delta-maker.js';
import { PublishError } from './errors.js';
import { checkBoardAndVersion, checkNewer } from './release-version.js';
import { newestFirst } from './semver.js';
import { checkSlotImage } from './slot-image-check.js';

export const DEFAULT_DELTA_COUNT = 2;

export type PublishProgress =
  | { step: 'checked'; imageBytes: number; previous: string[] }
  | {
      step: 'delta';
      /** 1-based, of `count`. */
      index: number;
      count: number;
      sourceVersion: string;
      progress: DeltaProgress;
    }
  | { step: 'delta-done'; index: number; count: number; sourceVersion: string; bytes: number }
  | { step: 'signing' };

export interface PublishOptions {
  repoDir: string;
  board: string;
  version: string;
  imagePath: string;
  /** Deltas from this many of the board's newest releases (default 2). */
  deltaCount?: number;
  /** Deltas from these published releases instead (the versions most of the fleet runs). */
  deltaFrom?: string[];
  makeDelta?: DeltaMaker;
  /** Where deltas are made before they are added (default: the system's temp folder). */
  workDir?: string;
  onProgress?: (progress: PublishProgress) => void;
  /** Passed to addTargets: clock, key paths, lock timeout. */
  tuf?: OperationOptions;
}

export interface PublishResult extends AddTargetsResult {
  imageTarget: string;
  deltaTargets: string[];
}

/**
 * Publishes a release of a board: checks the image and the version, makes deltas from the
 * board's newest releases into a temporary folder, then adds image and deltas in one
 * addTargets call. Until that call nothing in the repository changes, and addTargets itself
 * leaves the repository as it was when it fails.
 */
export async function publishRelease(options: PublishOptions): Promise<PublishResult> {
  const { repoDir, board, version, imagePath } = options;
  const deltaCount = options.deltaCount ?? DEFAULT_DELTA_COUNT;
  const makeDelta = options.makeDelta ?? defaultDeltaMaker;
  const progress = options.onProgress ?? (() => undefined);
  const imageTarget = checkBoardAndVersion(version, () => imageTargetName(board, version));
  const imageBytes = await checkSlotImage(imagePath);

  const previous = newestFirst(await publishedImages(repoDir, board));
  checkNewer('release', board, version, previous[0]);
  const sources = options.deltaFrom
    ? options.deltaFrom.map((from) => {
        const source = previous.find((image) => image.version === from);
        if (!source) {
          throw new PublishError(
            'DELTA_SOURCE_UNKNOWN',
            `--delta-from ${from}: no such release of board ${board}`,
          );
        }
        return source;
      })
    : previous.slice(0, Math.max(0, deltaCount));
  progress({ step: 'checked', imageBytes, previous: sources.map((image) => image.version) });

  const workDir = await mkdtemp(join(options.workDir ?? tmpdir(), 'ota-publish-'));
  try {
    const targets: NewTarget[] = [{ kind: 'image', board, version, path: imagePath }];
    for (const [position, source] of sources.entries()) {
      const step = { index: position + 1, count: sources.length, sourceVersion: source.version };
      const out = join(workDir, `from-${source.version}.bsdiff`);
      try {
        await makeDelta(source.path, imagePath, out, (delta) =>
          progress({ step: 'delta', ...step, progress: delta }),
        );
        const made = await stat(out);
        progress({ step: 'delta-done', ...step, bytes: made.size });
      } catch (error) {
        throw new PublishError(
          'DELTA_FAILED',
          `delta from ${source.version} to ${version}: ${(error as Error).message}`,
          { cause: error },
        );
      }
      targets.push({
        kind: 'delta',
        board,
        version,
        sourceVersion: source.version,
        sourceSha256: source.sha256,
        path: out,
      });
    }
    progress({ step: 'signing' });
    const result = await addTargets(repoDir, targets, options.tuf);
    return {
      ...result,
      imageTarget,
      deltaTargets: sources.map((source) => deltaTargetName(board, version, source.version)),
    };
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}
