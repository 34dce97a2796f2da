import { TufRepositoryError } from './errors.js';
import { targetNameOf, type TargetDescription } from '@edge/formats';
import type { TargetCustom } from './metadata.js';

export {
  deltaTargetName,
  imageTargetName,
  targetNameOf,
  type DeltaTarget,
  type ImageTarget,
  type TargetDescription,
} from '@edge/formats';

const SHA256_HEX = /^[0-9a-f]{64}$/;

export function customFieldsOf(target: TargetDescription): TargetCustom {
  if (target.kind === 'image') {
    return { board: target.board, version: target.version, kind: 'image' };
  }
  if (!SHA256_HEX.test(target.sourceSha256)) {
    throw new TufRepositoryError(
      'TARGET_INVALID',
      `delta ${targetNameOf(target)}: sourceSha256 must be 64 lowercase hex digits`,
    );
  }
  return {
    board: target.board,
    version: target.version,
    kind: 'delta',
    sourceVersion: target.sourceVersion,
    sourceSha256: target.sourceSha256,
  };
}
