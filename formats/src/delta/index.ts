export {
  BSDIFF40_MAGIC,
  DeltaError,
  decodeBsdiff40Header,
  encodeBsdiff40Header,
  type Bsdiff40Header,
  type DeltaErrorCode,
} from './bsdiff40-format.js';
export {
  applyBsdiff40Delta,
  type ApplyBsdiff40Options,
  type DeltaApplyProgress,
} from './bsdiff40-apply.js';
export {
  makeBsdiff40Delta,
  type DeltaMakeProgress,
  type MakeBsdiff40Options,
  type MakeBsdiff40Result,
} from './bsdiff40-generate.js';
export { Bzip2Reader } from './bzip2-reader.js';
