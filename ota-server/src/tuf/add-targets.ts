import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { TufRepositoryError } from './errors.js';
import { defaultKeyPath, repositoryLayout, targetFileRelativePath } from './layout.js';
import type { TargetEntry } from './metadata.js';
import { loadExpiryPolicy } from './options.js';
import type { OperationOptions } from './options.js';
import { publishMetadata } from './publish.js';
import type { PublishedVersions } from './publish.js';
import { loadRepositoryState } from './repository-state.js';
import { withRepositoryLock } from './repository-lock.js';
import { loadRoleKey } from './role-keys.js';
import { customFieldsOf, imageTargetName, newTargetName } from './target-names.js';
import { storeTargetFile } from './target-store.js';
import type { StoredTarget } from './target-store.js';

/**
 * A file to publish: a full image, a delta from an earlier image of the same board, or a file
 * of an app release (`path` is the source file; `filePath` its place in the release).
 */
export type NewTarget =
  | { kind: 'image'; board: string; version: string; path: string }
  | {
      kind: 'delta';
      board: string;
      version: string;
      sourceVersion: string;
      /** Required when the source image is not a target of this repository. */
      sourceSha256?: string;
      path: string;
    }
  | { kind: 'app-file'; board: string; appVersion: string; filePath: string; path: string }
  | { kind: 'app'; board: string; appVersion: string; path: string };

export interface AddTargetsResult {
  /** Target names that were new (a name already published with the same bytes is skipped). */
  added: string[];
  versions: PublishedVersions;
}

/**
 * Publishes images and deltas: copies each file into targets/ under its SHA-256, then signs
 * a new targets version, snapshot and timestamp. Holds the repository lock throughout.
 */
export async function addTargets(
  dir: string,
  newTargets: NewTarget[],
  options: OperationOptions = {},
): Promise<AddTargetsResult> {
  const layout = repositoryLayout(dir);
  return withRepositoryLock(layout, options, async () => {
    const state = await loadRepositoryState(dir);
    const root = state.root.envelope.signed;
    const keyPath = (role: 'targets' | 'snapshot' | 'timestamp'): string =>
      options.keyPaths?.[role] ?? defaultKeyPath(layout, role);
    // Every key is checked before anything is written.
    const keys = {
      targets: await loadRoleKey(keyPath('targets'), 'targets', root),
      snapshot: await loadRoleKey(keyPath('snapshot'), 'snapshot', root),
      timestamp: await loadRoleKey(keyPath('timestamp'), 'timestamp', root),
    };
    const policy = await loadExpiryPolicy(layout, options.expiries);
    const names = newTargets.map((target) => newTargetName(target));
    const duplicate = names.find((name, index) => names.indexOf(name) !== index);
    if (duplicate) {
      throw new TufRepositoryError('TARGET_INVALID', `${duplicate}: given twice in one call`);
    }

    const existing = state.targets.envelope.signed.targets;
    const targets: Record<string, TargetEntry> = { ...existing };
    const stored: StoredTarget[] = [];
    const added: string[] = [];
    try {
      // Images first, so that deltas in the same call can name them as source and result.
      const ordered = [...newTargets].sort(
        (a, b) => Number(a.kind === 'delta') - Number(b.kind === 'delta'),
      );
      for (const target of ordered) {
        const name = newTargetName(target);
        const file = await storeTargetFile(layout, name, target.path);
        stored.push(file);
        const description =
          target.kind === 'delta'
            ? { ...target, sourceSha256: sourceSha256Of(target, targets) }
            : target.kind === 'app-file'
              ? { ...target, path: target.filePath }
              : target;
        if (target.kind === 'delta' && !targets[imageTargetName(target.board, target.version)]) {
          throw new TufRepositoryError(
            'TARGET_INVALID',
            `${name}: its result ${imageTargetName(target.board, target.version)} is not published; ` +
              'add the image first or in the same call',
          );
        }
        const entry: TargetEntry = {
          length: file.length,
          hashes: { sha256: file.sha256 },
          custom: customFieldsOf(description),
        };
        const before = existing[name];
        if (before) {
          if (before.hashes.sha256 !== entry.hashes.sha256) {
            throw new TufRepositoryError(
              'TARGET_CONFLICT',
              `${name}: already published with sha256 ${before.hashes.sha256}, and ${target.path} ` +
                `has ${entry.hashes.sha256}; a published version never changes`,
            );
          }
          continue;
        }
        targets[name] = entry;
        added.push(name);
      }
      if (added.length === 0) {
        return {
          added,
          versions: {
            targets: state.targets.envelope.signed.version,
            snapshot: state.snapshot.envelope.signed.version,
            timestamp: state.timestamp.envelope.signed.version,
          },
        };
      }
    } catch (error) {
      await removeUnpublished(layout.targetsDir, stored, existing);
      throw error;
    }
    const versions = await publishMetadata(state, { targets }, keys, {
      layout,
      now: options.now ?? new Date(),
      policy,
      beforeWrite: options.beforeWrite,
    });
    return { added, versions };
  });
}

function sourceSha256Of(
  delta: Extract<NewTarget, { kind: 'delta' }>,
  targets: Record<string, TargetEntry>,
): string {
  const sourceName = imageTargetName(delta.board, delta.sourceVersion);
  const source = targets[sourceName];
  if (source) {
    if (delta.sourceSha256 !== undefined && delta.sourceSha256 !== source.hashes.sha256) {
      throw new TufRepositoryError(
        'TARGET_INVALID',
        `delta from ${sourceName}: sourceSha256 ${delta.sourceSha256} is not that image's ${source.hashes.sha256}`,
      );
    }
    return source.hashes.sha256;
  }
  if (delta.sourceSha256 === undefined) {
    throw new TufRepositoryError(
      'TARGET_INVALID',
      `delta from ${sourceName}: that image is not published here; give its sourceSha256`,
    );
  }
  return delta.sourceSha256;
}

/** Files copied by a call that then failed, unless a published target is that very file. */
async function removeUnpublished(
  targetsDir: string,
  stored: StoredTarget[],
  published: Record<string, TargetEntry>,
): Promise<void> {
  const inUse = new Set(
    Object.entries(published).map(([name, entry]) =>
      targetFileRelativePath(name, entry.hashes.sha256),
    ),
  );
  for (const file of stored) {
    if (!inUse.has(file.relativePath))
      await rm(join(targetsDir, file.relativePath), { force: true });
  }
}
