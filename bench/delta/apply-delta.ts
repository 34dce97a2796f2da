import { applyBsdiff40Delta } from '@edge/formats';

/**
 * `node --import tsx bench/delta/apply-delta.ts OLD PATCH NEW`: our applier as its own process,
 * to measure; with no arguments it only loads the applier (the idle baseline).
 */
const [oldPath, patchPath, newPath] = process.argv.slice(2);
if (newPath !== undefined)
  await applyBsdiff40Delta({ oldPath: oldPath!, patchPath: patchPath!, newPath });
