import { join } from 'node:path';
import { repositoryLayout } from '../tuf/index.js';
import { targetFileRelativePath } from '../tuf/layout.js';
import { loadRepositoryState } from '../tuf/repository-state.js';

export interface PublishedImage {
  board: string;
  version: string;
  /** Its TUF target name: <board>/<version>/rootfs.ext4. */
  targetName: string;
  sha256: string;
  length: number;
  /** Where its bytes are in the repository. */
  path: string;
}

/** The full images the repository's current targets metadata lists, of one board or all. */
export async function publishedImages(repoDir: string, board?: string): Promise<PublishedImage[]> {
  const state = await loadRepositoryState(repoDir);
  const layout = repositoryLayout(repoDir);
  const images: PublishedImage[] = [];
  for (const [name, entry] of Object.entries(state.targets.envelope.signed.targets)) {
    const custom = entry.custom;
    if (custom.kind !== 'image' || typeof custom.board !== 'string') continue;
    if (board !== undefined && custom.board !== board) continue;
    images.push({
      board: custom.board,
      version: String(custom.version),
      targetName: name,
      sha256: entry.hashes.sha256,
      length: entry.length,
      path: join(layout.targetsDir, targetFileRelativePath(name, entry.hashes.sha256)),
    });
  }
  return images;
}
