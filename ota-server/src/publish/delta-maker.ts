import { makeBsdiff40Delta } from '@edge/formats';

export interface DeltaProgress {
  bytesDone: number;
  bytesTotal: number;
  /** What the generator is doing, when it says (index, match). */
  phase?: string;
}

/** Writes a BSDIFF40 delta that turns oldPath into newPath at outPath. */
export type DeltaMaker = (
  oldPath: string,
  newPath: string,
  outPath: string,
  onProgress: (progress: DeltaProgress) => void,
) => Promise<void>;

/** The delta generator publish uses unless told another: the shared BSDIFF40 generator. */
export const defaultDeltaMaker: DeltaMaker = async (oldPath, newPath, outPath, onProgress) => {
  await makeBsdiff40Delta(oldPath, newPath, outPath, { onProgress });
};
