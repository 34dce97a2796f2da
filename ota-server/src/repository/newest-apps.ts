import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { newestFirst } from '../publish/semver.js';
import { repositoryLayout } from '../tuf/index.js';
import { publishedApps, type PublishedApp } from './published-apps.js';

/**
 * Each board's newest app release, for the check-in answer. The repository is read again only
 * when timestamp.json was replaced (every publish and refresh replaces it, by rename), so a
 * fleet checking in at once costs one stat per check-in, and a new release is seen at once.
 */
export class NewestApps {
  #key = '';
  #newest: Promise<Map<string, PublishedApp>> | undefined;
  #lastRead = new Map<string, PublishedApp>();

  constructor(private readonly repoDir: string) {}

  async of(board: string): Promise<PublishedApp | undefined> {
    const timestamp = join(repositoryLayout(this.repoDir).metadataDir, 'timestamp.json');
    const info = await stat(timestamp).catch(() => undefined);
    const key = info ? `${info.ino}:${info.mtimeMs}:${info.size}` : 'none';
    if (key !== this.#key || !this.#newest) {
      this.#key = key;
      // A failed read answers with the last good one (a check-in must not fail for it), and
      // is not kept: the next check-in reads again.
      this.#newest = info
        ? this.#read().then(
            (newest) => (this.#lastRead = newest),
            () => {
              this.#key = '';
              return this.#lastRead;
            },
          )
        : Promise.resolve(new Map());
    }
    return (await this.#newest).get(board);
  }

  async #read(): Promise<Map<string, PublishedApp>> {
    const newest = new Map<string, PublishedApp>();
    for (const app of newestFirst(await publishedApps(this.repoDir))) {
      if (!newest.has(app.board)) newest.set(app.board, app);
    }
    return newest;
  }
}
