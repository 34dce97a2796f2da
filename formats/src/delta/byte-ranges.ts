import { Buffer } from 'node:buffer';

/** Ranges are compared this many bytes at a time with memcmp before going byte by byte. */
export const COMPARE_BLOCK = 4096;

/** Whether a[aStart, +length) equals b[bStart, +length) (memcmp, not a JS loop). */
export function sameBytes(
  a: Uint8Array,
  aStart: number,
  b: Uint8Array,
  bStart: number,
  length: number,
): boolean {
  return (
    Buffer.compare(a.subarray(aStart, aStart + length), b.subarray(bStart, bStart + length)) === 0
  );
}

/** Length of the common prefix of a[aStart...] and b[bStart...], at most limit. */
export function commonPrefix(
  a: Uint8Array,
  aStart: number,
  b: Uint8Array,
  bStart: number,
  limit: number,
): number {
  let n = 0;
  const quick = Math.min(limit, 64);
  while (n < quick && a[aStart + n] === b[bStart + n]) n++;
  if (n < quick) return n;
  while (limit - n >= COMPARE_BLOCK && sameBytes(a, aStart + n, b, bStart + n, COMPARE_BLOCK)) {
    n += COMPARE_BLOCK;
  }
  while (n < limit && a[aStart + n] === b[bStart + n]) n++;
  return n;
}
