import { TargetNameError } from '@edge/formats';
import { TufRepositoryError } from '../tuf/index.js';
import { PublishError } from './errors.js';
import { compareSemver, parseSemver } from './semver.js';

// What publish and publish-app check alike about the board and the version they are given.

/**
 * The release's target name, from `targetName`; a board or version that cannot name a target,
 * or a version that is not semver, is a PublishError (BOARD_INVALID, VERSION_INVALID).
 */
export function checkBoardAndVersion(version: string, targetName: () => string): string {
  let target: string;
  try {
    target = targetName();
  } catch (error) {
    if (!(error instanceof TargetNameError || error instanceof TufRepositoryError)) throw error;
    throw new PublishError(
      /^board/.test(error.message) ? 'BOARD_INVALID' : 'VERSION_INVALID',
      error.message,
    );
  }
  if (!parseSemver(version)) {
    throw new PublishError(
      'VERSION_INVALID',
      `version '${version}': not a semantic version (MAJOR.MINOR.PATCH, like 1.4.0 or 2.0.0-rc.1)`,
    );
  }
  return target;
}

/**
 * Refuses (VERSION_NOT_NEWER) a version, checked by checkBoardAndVersion, that does not come
 * after `newest`, the board's newest release of that kind.
 */
export function checkNewer(
  kind: 'release' | 'app release',
  board: string,
  version: string,
  newest: { version: string } | undefined,
): void {
  if (!newest || compareSemver(parseSemver(version)!, parseSemver(newest.version)!) > 0) return;
  const noun = kind === 'release' ? 'version' : 'app version';
  throw new PublishError(
    'VERSION_NOT_NEWER',
    `${noun} ${version} is not newer than ${newest.version}, board ${board}'s newest ${kind}`,
  );
}
