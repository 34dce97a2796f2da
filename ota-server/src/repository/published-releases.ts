import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { repositoryLayout } from '../tuf/index.js';
import { targetFileRelativePath } from '../tuf/layout.js';
import { loadRepositoryState } from '../tuf/repository-state.js';

export interface PublishedRelease {
  version: string;
  /** When its image reached the repository (the stored file's time): targets carry no date. */
  publishedAt: Date | null;
  imageTarget: string;
  imageBytes: number;
  /** Deltas to this release, by the version they start from. */
  deltas: { fromVersion: string; target: string; bytes: number }[];
}

/** Each board's published images with their deltas, from the repository's current targets. */
export async function publishedReleases(repoDir: string): Promise<Map<string, PublishedRelease[]>> {
  const state = await loadRepositoryState(repoDir);
  const layout = repositoryLayout(repoDir);
  const targets = Object.entries(state.targets.envelope.signed.targets);
  const releases = new Map<string, Map<string, PublishedRelease>>();
  const releaseOf = (board: string, version: string) => {
    const ofBoard = releases.get(board) ?? new Map<string, PublishedRelease>();
    releases.set(board, ofBoard);
    return ofBoard.get(version);
  };
  for (const [name, entry] of targets) {
    const { kind, board, version } = entry.custom;
    if (kind !== 'image' || typeof board !== 'string') continue;
    const stored = join(layout.targetsDir, targetFileRelativePath(name, entry.hashes.sha256));
    const publishedAt = await stat(stored).then(
      (info) => info.mtime,
      () => null,
    );
    releaseOf(board, String(version));
    releases.get(board)!.set(String(version), {
      version: String(version),
      publishedAt,
      imageTarget: name,
      imageBytes: entry.length,
      deltas: [],
    });
  }
  for (const [name, entry] of targets) {
    const { kind, board, version, sourceVersion } = entry.custom;
    if (kind !== 'delta' || typeof board !== 'string') continue;
    releaseOf(board, String(version))?.deltas.push({
      fromVersion: String(sourceVersion),
      target: name,
      bytes: entry.length,
    });
  }
  return new Map(
    [...releases].map(([board, versions]) => [board, [...versions.values()]] as const),
  );
}
