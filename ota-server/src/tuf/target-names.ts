import { TufRepositoryError } from './errors.js';
import {
  appTargetNameOf,
  targetNameOf,
  type AppFileTarget,
  type AppIndexTarget,
  type TargetDescription,
} from '@edge/formats';
import type { NewTarget } from './add-targets.js';
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

/** The target name of a file to publish, whatever its kind. */
export function newTargetName(target: NewTarget): string {
  if (target.kind === 'app-file') return appTargetNameOf({ ...target, path: target.filePath });
  return target.kind === 'app' ? appTargetNameOf(target) : targetNameOf(target);
}

export function customFieldsOf(
  target: TargetDescription | AppFileTarget | AppIndexTarget,
): TargetCustom {
  if (target.kind === 'app' || target.kind === 'app-file') {
    return { board: target.board, appVersion: target.appVersion, kind: target.kind };
  }
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
