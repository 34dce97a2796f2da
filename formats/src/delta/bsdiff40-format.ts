/**
 * BSDIFF40, the patch format of bsdiff/bspatch 4.x, defined once for the generator and the
 * applier.
 *
 * A patch is a 32-byte header, then three bzip2 streams back to back:
 *   - control: triples (diff length, extra length, old seek) of 8-byte offtin integers;
 *   - diff: bytes added to the old file's bytes, for each triple's diff length;
 *   - extra: bytes copied as they are, for each triple's extra length.
 * Header: "BSDIFF40", control stream length, diff stream length, new file size (offtin each).
 */

export const BSDIFF40_MAGIC = 'BSDIFF40';
export const BSDIFF40_HEADER_SIZE = 32;
/** One control triple: three offtin integers. */
export const BSDIFF40_CONTROL_SIZE = 24;

export interface Bsdiff40Header {
  controlLength: number;
  diffLength: number;
  newSize: number;
}

/** Why a delta was refused: callers (the update agent) report the code. */
export type DeltaErrorCode =
  | 'BAD_MAGIC'
  | 'BAD_HEADER'
  | 'TRUNCATED'
  | 'BAD_CONTROL'
  | 'OLD_RANGE'
  | 'NEW_SIZE_EXCEEDED'
  | 'NEW_SIZE_MISMATCH'
  | 'BZIP2_CORRUPT'
  | 'BZIP2_CRC';

/** A delta that cannot be applied as it is: truncated, corrupt, or not made for this old file. */
export class DeltaError extends Error {
  readonly code: DeltaErrorCode;

  constructor(code: DeltaErrorCode, message: string) {
    super(message);
    this.name = 'DeltaError';
    this.code = code;
  }
}

/**
 * Reads bspatch's offtin: 8 bytes little-endian sign-magnitude (bit 63 is the sign).
 * Refuses magnitudes a double cannot hold exactly (no file gets near 2^53 bytes).
 */
export function readOfftin(bytes: Uint8Array, offset: number): number {
  const high = bytes[offset + 7]! & 0x7f;
  if (high > 0x1f) {
    throw new DeltaError('BAD_CONTROL', `integer at ${offset} is out of range`);
  }
  let value = high;
  for (let i = 6; i >= 0; i--) value = value * 256 + bytes[offset + i]!;
  return (bytes[offset + 7]! & 0x80) !== 0 && value !== 0 ? -value : value;
}

/** Writes bsdiff's offtout: the inverse of readOfftin. */
export function writeOfftout(value: number, bytes: Uint8Array, offset: number): void {
  if (!Number.isSafeInteger(value)) throw new RangeError(`offtout: ${value} is not a safe integer`);
  let magnitude = Math.abs(value);
  for (let i = 0; i < 8; i++) {
    bytes[offset + i] = magnitude % 256;
    magnitude = Math.floor(magnitude / 256);
  }
  if (value < 0) bytes[offset + 7]! |= 0x80;
}

export function encodeBsdiff40Header(header: Bsdiff40Header): Uint8Array {
  const bytes = new Uint8Array(BSDIFF40_HEADER_SIZE);
  bytes.set(new TextEncoder().encode(BSDIFF40_MAGIC), 0);
  writeOfftout(header.controlLength, bytes, 8);
  writeOfftout(header.diffLength, bytes, 16);
  writeOfftout(header.newSize, bytes, 24);
  return bytes;
}

/** Parses and checks a header against the patch's length: every length in it must fit. */
export function decodeBsdiff40Header(bytes: Uint8Array, patchLength: number): Bsdiff40Header {
  if (bytes.length < BSDIFF40_HEADER_SIZE || patchLength < BSDIFF40_HEADER_SIZE) {
    throw new DeltaError('TRUNCATED', `delta is ${patchLength} bytes, shorter than its header`);
  }
  const magic = new TextDecoder('latin1').decode(bytes.subarray(0, 8));
  if (magic !== BSDIFF40_MAGIC) {
    throw new DeltaError('BAD_MAGIC', `not a BSDIFF40 delta (magic ${JSON.stringify(magic)})`);
  }
  const header = {
    controlLength: readOfftin(bytes, 8),
    diffLength: readOfftin(bytes, 16),
    newSize: readOfftin(bytes, 24),
  };
  if (header.controlLength < 0 || header.diffLength < 0 || header.newSize < 0) {
    throw new DeltaError('BAD_HEADER', `negative length in header ${JSON.stringify(header)}`);
  }
  const streams = BSDIFF40_HEADER_SIZE + header.controlLength + header.diffLength;
  if (streams > patchLength) {
    throw new DeltaError(
      'TRUNCATED',
      `header says control and diff streams end at byte ${streams} but the delta has ${patchLength}`,
    );
  }
  return header;
}
