/** HTTP Range and validators (RFC 9110 sections 13 and 14), for one range per request. */

export interface ByteRange {
  start: number;
  /** Inclusive. */
  end: number;
}

export type RangeRequest =
  { kind: 'none' } | { kind: 'range'; range: ByteRange } | { kind: 'unsatisfiable' };

/**
 * Reads a Range header against a representation of `size` bytes. Syntax we do not serve
 * (another unit, several ranges, garbage) is ignored, which the RFC allows: the answer is
 * then the whole file.
 */
export function parseRange(header: string | undefined, size: number): RangeRequest {
  if (header === undefined) return { kind: 'none' };
  const match = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!match) return { kind: 'none' };
  const [, first = '', last = ''] = match;
  if (first === '' && last === '') return { kind: 'none' };
  if (first === '') {
    // A suffix: the last N bytes.
    const length = Number(last);
    if (length === 0 || size === 0) return { kind: 'unsatisfiable' };
    return { kind: 'range', range: { start: Math.max(0, size - length), end: size - 1 } };
  }
  const start = Number(first);
  if (!Number.isSafeInteger(start)) return { kind: 'unsatisfiable' };
  if (last !== '' && Number(last) < start) return { kind: 'none' };
  if (start >= size) return { kind: 'unsatisfiable' };
  const end = last === '' ? size - 1 : Math.min(Number(last), size - 1);
  return { kind: 'range', range: { start, end } };
}

/** The entity tags in an If-None-Match or If-Range value ('*' stays '*'). */
function entityTags(header: string): string[] {
  return header.match(/(?:W\/)?"[^"]*"|\*/g) ?? [];
}

function opaque(tag: string): string {
  return tag.startsWith('W/') ? tag.slice(2) : tag;
}

/** If-None-Match: weak comparison, so a weak tag of the same bytes also matches. */
export function noneMatch(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  return entityTags(header).some((tag) => tag === '*' || opaque(tag) === opaque(etag));
}

/**
 * If-Range: the range is served only when the validator still names these bytes: a strong
 * ETag equal to ours, or the Last-Modified date itself. Anything else: the whole file.
 */
export function ifRangeHolds(
  header: string | undefined,
  etag: string,
  lastModified: string,
): boolean {
  if (header === undefined) return true;
  const value = header.trim();
  if (value.startsWith('"') || value.startsWith('W/')) {
    return !value.startsWith('W/') && !etag.startsWith('W/') && value === etag;
  }
  return value === lastModified;
}

export function contentRange(range: ByteRange, size: number): string {
  return `bytes ${range.start}-${range.end}/${size}`;
}
