/**
 * Target names and custom fields that the device and the update server agree on:
 *   <board>/<version>/rootfs.ext4                         a full slot image
 *   <board>/<version>/rootfs.from-<sourceVersion>.bsdiff  a BSDIFF40 delta from an image
 * custom: { board, version, kind: 'image' | 'delta' } and, for a delta, sourceVersion and
 * sourceSha256 (the image the delta applies to).
 */
export interface ImageTarget {
  kind: 'image';
  board: string;
  version: string;
}

export interface DeltaTarget {
  kind: 'delta';
  board: string;
  version: string;
  sourceVersion: string;
  sourceSha256: string;
}

export type TargetDescription = ImageTarget | DeltaTarget;

export class TargetNameError extends Error {
  override name = 'TargetNameError';
  readonly code = 'TARGET_INVALID';
}

/** Board and version names become path segments and URL parts: keep them plain. */
const SEGMENT = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/;

export function imageTargetName(board: string, version: string): string {
  return `${checkSegment('board', board)}/${checkSegment('version', version)}/rootfs.ext4`;
}

export function deltaTargetName(board: string, version: string, sourceVersion: string): string {
  checkSegment('source version', sourceVersion);
  return `${checkSegment('board', board)}/${checkSegment('version', version)}/rootfs.from-${sourceVersion}.bsdiff`;
}

export function targetNameOf(target: ImageTarget | Omit<DeltaTarget, 'sourceSha256'>): string {
  return target.kind === 'image'
    ? imageTargetName(target.board, target.version)
    : deltaTargetName(target.board, target.version, target.sourceVersion);
}

/**
 * Where a target lives with consistent snapshots: `<sha256>.<file name>` in the folders of its
 * name. The server stores it there; tuf-js (and the device's own downloader) fetch it there.
 */
export function targetFileRelativePath(targetName: string, sha256: string): string {
  const slash = targetName.lastIndexOf('/');
  return `${targetName.slice(0, slash + 1)}${sha256}.${targetName.slice(slash + 1)}`;
}

function checkSegment(what: string, value: string): string {
  if (!SEGMENT.test(value) || value.includes('..')) {
    throw new TargetNameError(
      `${what} '${value}': use letters, digits and . _ + - (at most 64, no '..', not starting with a sign)`,
    );
  }
  return value;
}
