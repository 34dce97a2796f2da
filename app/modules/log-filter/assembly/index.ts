// Forwards the interesting lines of a log through edge_log: those at or above a level that
// contain a pattern. Input bytes are log lines (UTF-8, "\n" or "\r\n" separated).
import {
  EDGE_EINVAL,
  EDGE_EUTF8,
  EDGE_OK,
  LOG_DEBUG,
  LOG_ERROR,
  LOG_INFO,
  LOG_WARN,
  logUtf8,
} from '../../../sdk/assembly/index';

export { edge_alloc } from '../../../sdk/assembly/index';

let minLevel: i32 = LOG_WARN;
// UTF-8 bytes a line must contain; empty matches every line.
let pattern: ArrayBuffer = new ArrayBuffer(0);

/** Sets the lowest level forwarded (0 debug .. 3 error). Returns 0, or EDGE_EINVAL. */
export function set_min_level(level: i32): i32 {
  if (level < LOG_DEBUG || level > LOG_ERROR) return EDGE_EINVAL;
  minLevel = level;
  return EDGE_OK;
}

/** Sets the pattern from the call's input bytes (empty: every line). Returns 0. */
export function set_pattern(ptr: usize, len: i32): i32 {
  if (len < 0) return EDGE_EINVAL;
  const copy = new ArrayBuffer(len);
  memory.copy(changetype<usize>(copy), ptr, <usize>len);
  pattern = copy;
  return EDGE_OK;
}

/**
 * Forwards each line of the input at or above the minimum level that contains the pattern,
 * logged at its own level. Returns the number of lines forwarded, or the host's error code
 * when it stops taking logs (quota); a line that is not valid UTF-8 is skipped.
 */
export function filter(ptr: usize, len: i32): i32 {
  if (len < 0) return EDGE_EINVAL;
  let forwarded = 0;
  let start: usize = ptr;
  const end: usize = ptr + <usize>len;
  while (start < end) {
    let lineEnd = start;
    while (lineEnd < end && load<u8>(lineEnd) != 0x0a) lineEnd++;
    let length = <i32>(lineEnd - start);
    if (length > 0 && load<u8>(start + <usize>length - 1) == 0x0d) length--;
    const level = lineLevel(start, length);
    if (length > 0 && level >= minLevel && contains(start, length)) {
      const result = logUtf8(level, start, length);
      if (result == EDGE_OK) forwarded++;
      else if (result != EDGE_EUTF8) return result;
    }
    start = lineEnd + 1;
  }
  return forwarded;
}

function lowerAscii(c: u32): u32 {
  return c >= 0x41 && c <= 0x5a ? c | 0x20 : c;
}

function isWordByte(c: u32): bool {
  const lower = lowerAscii(c);
  return (lower >= 0x61 && lower <= 0x7a) || (c >= 0x30 && c <= 0x39) || c == 0x5f;
}

/** Whether the word at [ptr, ptr+len) equals `word` (lower-case ASCII), case-insensitively. */
function wordIs(ptr: usize, len: i32, word: string): bool {
  if (len != word.length) return false;
  for (let i = 0; i < len; i++) {
    if (lowerAscii(load<u8>(ptr + <usize>i)) != <u32>word.charCodeAt(i)) return false;
  }
  return true;
}

function levelOfWord(ptr: usize, len: i32): i32 {
  if (wordIs(ptr, len, 'debug') || wordIs(ptr, len, 'trace')) return LOG_DEBUG;
  if (wordIs(ptr, len, 'info') || wordIs(ptr, len, 'notice')) return LOG_INFO;
  if (wordIs(ptr, len, 'warn') || wordIs(ptr, len, 'warning')) return LOG_WARN;
  if (
    wordIs(ptr, len, 'error') ||
    wordIs(ptr, len, 'err') ||
    wordIs(ptr, len, 'crit') ||
    wordIs(ptr, len, 'critical') ||
    wordIs(ptr, len, 'fatal')
  ) {
    return LOG_ERROR;
  }
  return -1;
}

/** The level named by the line's first level word ("ERROR", "[warn]", "level=info"); else info. */
function lineLevel(ptr: usize, len: i32): i32 {
  let i = 0;
  while (i < len) {
    while (i < len && !isWordByte(load<u8>(ptr + <usize>i))) i++;
    const wordStart = i;
    while (i < len && isWordByte(load<u8>(ptr + <usize>i))) i++;
    if (i > wordStart) {
      const level = levelOfWord(ptr + <usize>wordStart, i - wordStart);
      if (level >= 0) return level;
    }
  }
  return LOG_INFO;
}

/** Whether the line contains the pattern's bytes (UTF-8 is self-synchronising, so bytes suffice). */
function contains(ptr: usize, len: i32): bool {
  const needle = changetype<usize>(pattern);
  const needleLength = pattern.byteLength;
  for (let i = 0; i <= len - needleLength; i++) {
    if (memory.compare(ptr + <usize>i, needle, <usize>needleLength) == 0) return true;
  }
  return false;
}
