import { makeBsdiff40Delta } from '@edge/formats';

/** `node --import tsx bench/delta/make-delta.ts OLD NEW PATCH`: our generator as its own process, to measure. */
const [oldPath, newPath, patchPath] = process.argv.slice(2);
if (patchPath === undefined) throw new Error('usage: make-delta.ts OLD NEW PATCH');
const result = await makeBsdiff40Delta(oldPath!, newPath!, patchPath);
process.stdout.write(`${JSON.stringify(result)}\n`);
