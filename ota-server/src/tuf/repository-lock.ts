import { removeStaleTempFiles } from '@edge/formats';
import type { RepositoryLayout } from './layout.js';
import { isAlive, withLock } from './lock.js';
import type { OperationOptions } from './options.js';

/** Runs a writing operation alone on the repository, after clearing what a crashed one left. */
export async function withRepositoryLock<T>(
  layout: RepositoryLayout,
  options: OperationOptions,
  work: () => Promise<T>,
): Promise<T> {
  return withLock(
    layout.lockFile,
    async () => {
      await removeStaleTempFiles(layout.dir, isAlive);
      return work();
    },
    options,
  );
}
