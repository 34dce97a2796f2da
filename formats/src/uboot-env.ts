import { crc32 } from 'node:zlib';

/**
 * U-Boot's single-copy environment block, as `env export -c -s SIZE` writes it and
 * `env import -c ADDR SIZE` reads it: a little-endian CRC32 of the SIZE - 4 bytes that
 * follow, then `key=value\0` pairs sorted by key (strcmp), an empty entry (`\0`) that ends
 * the list, and zero bytes up to SIZE. Rules below follow lib/hashtable.c (hexport_r and
 * himport_r) and cmd/nvedit.c of U-Boot 2023.01, the version Debian bookworm ships.
 */

/** The CRC32 in front of the pairs; a build with CONFIG_SYS_REDUNDAND_ENVIRONMENT adds a flag byte (ours do not). */
export const UBOOT_ENV_HEADER_SIZE = 4;

export type UbootEnvErrorCode =
  | 'ENV_BAD_CRC'
  | 'ENV_TOO_SHORT'
  | 'ENV_MALFORMED'
  | 'ENV_TOO_BIG'
  | 'ENV_BAD_NAME'
  | 'ENV_BAD_VALUE'
  | 'ENV_BAD_SIZE';

/** An environment that cannot be encoded or decoded; `code` tells the cases apart. */
export class UbootEnvError extends Error {
  readonly code: UbootEnvErrorCode;

  constructor(code: UbootEnvErrorCode, message: string) {
    super(message);
    this.name = 'UbootEnvError';
    this.code = code;
  }
}

const NUL = 0x00;
const TAB = 0x09;
const SPACE = 0x20;
const HASH = 0x23;
const EQUALS = 0x3d;
const BACKSLASH = 0x5c;

/**
 * Why U-Boot or the Linux tools would not give a name back unchanged, or undefined if
 * they would. himport_r skips leading blanks and drops entries that start with '#'.
 */
function nameProblem(name: string): string | undefined {
  if (name === '') return 'is empty';
  if (name.includes('=')) return "contains '='";
  if (name.includes('\0')) return 'contains a NUL byte';
  if (name.includes('\n')) return 'contains a newline';
  if (/^[ \t#]/.test(name)) return "starts with a blank or '#', which U-Boot's import skips";
  return undefined;
}

/**
 * Why a value cannot be stored, or undefined. U-Boot's export escapes a backslash as `\\`
 * and its import unescapes it, while fw_printenv/fw_setenv (U-Boot's and libubootenv's)
 * keep bytes as they are: no backslash can mean the same thing to both sides.
 */
function valueProblem(value: string): string | undefined {
  if (value.includes('\0')) return 'contains a NUL byte';
  if (value.includes('\n')) return 'contains a newline';
  if (value.includes('\\'))
    return "contains a backslash, which U-Boot's export and import escape and the Linux tools do not";
  return undefined;
}

/**
 * The `size` bytes U-Boot's `env export -c -s <size>` writes for these variables.
 * An empty value means "not set", as in U-Boot (`setenv name` deletes), so it is left out.
 */
export function encodeUbootEnv(vars: Record<string, string>, size: number): Buffer {
  if (!Number.isInteger(size) || size <= UBOOT_ENV_HEADER_SIZE) {
    throw new UbootEnvError(
      'ENV_BAD_SIZE',
      `environment size ${size} must be an integer above ${UBOOT_ENV_HEADER_SIZE}`,
    );
  }
  const pairs: Buffer[] = [];
  for (const [name, value] of Object.entries(vars)) {
    const badName = nameProblem(name);
    if (badName)
      throw new UbootEnvError('ENV_BAD_NAME', `variable name ${JSON.stringify(name)} ${badName}`);
    const badValue = valueProblem(value);
    if (badValue) throw new UbootEnvError('ENV_BAD_VALUE', `value of ${name} ${badValue}`);
    if (value !== '') pairs.push(Buffer.from(`${name}=${value}\0`, 'utf8'));
  }
  // hexport_r sorts with strcmp: byte order of the names; '=' ends every name and sorts below its letters.
  pairs.sort((a, b) => Buffer.compare(nameBytes(a), nameBytes(b)));
  const dataLength = pairs.reduce((total, pair) => total + pair.length, 0) + 1; // + the empty entry
  const room = size - UBOOT_ENV_HEADER_SIZE;
  if (dataLength > room) {
    throw new UbootEnvError(
      'ENV_TOO_BIG',
      `environment needs ${dataLength} bytes but a ${size}-byte block holds ${room} after its CRC`,
    );
  }
  const block = Buffer.alloc(size); // export zero-fills the whole buffer first
  let offset = UBOOT_ENV_HEADER_SIZE;
  for (const pair of pairs) offset += pair.copy(block, offset);
  block.writeUInt32LE(crc32(block.subarray(UBOOT_ENV_HEADER_SIZE)) >>> 0, 0);
  return block;
}

function nameBytes(pair: Buffer): Buffer {
  return pair.subarray(0, pair.indexOf(EQUALS));
}

/** The stored CRC matches the data: what `env import -c` checks before anything else. */
export function ubootEnvCrcIsValid(block: Buffer): boolean {
  if (block.length <= UBOOT_ENV_HEADER_SIZE) return false;
  return block.readUInt32LE(0) === crc32(block.subarray(UBOOT_ENV_HEADER_SIZE)) >>> 0;
}

/**
 * The variables `env import -c <addr> <block.length>` would set from this block.
 * Parsing follows himport_r: entries end at the first empty one (bytes after it are
 * ignored), `name` and `name=` unset the name, a later entry overrides an earlier one,
 * leading blanks are skipped, `#` entries are comments, and `\x` in a value stands for x.
 */
export function decodeUbootEnv(block: Buffer): Record<string, string> {
  if (block.length <= UBOOT_ENV_HEADER_SIZE) {
    throw new UbootEnvError(
      'ENV_TOO_SHORT',
      `environment block of ${block.length} bytes holds no data`,
    );
  }
  const stored = block.readUInt32LE(0);
  const computed = crc32(block.subarray(UBOOT_ENV_HEADER_SIZE)) >>> 0;
  if (stored !== computed) {
    throw new UbootEnvError(
      'ENV_BAD_CRC',
      `environment CRC32 is 0x${hex32(stored)} but its ${block.length - UBOOT_ENV_HEADER_SIZE} data bytes give 0x${hex32(computed)}`,
    );
  }
  return parseEntries(block.subarray(UBOOT_ENV_HEADER_SIZE));
}

function parseEntries(data: Buffer): Record<string, string> {
  const vars = new Map<string, string>();
  const at = (i: number) => (i < data.length ? data[i]! : NUL); // himport_r parses a NUL-terminated copy
  let p = 0;
  do {
    while (at(p) === SPACE || at(p) === TAB) p++;
    if (at(p) === HASH) {
      while (at(p) !== NUL) p++;
      p++;
      continue;
    }
    const nameStart = p;
    while (at(p) !== EQUALS && at(p) !== NUL) p++;
    const name = data.toString('utf8', nameStart, Math.min(p, data.length));
    if (at(p) === NUL || at(p + 1) === NUL) {
      vars.delete(name); // "name" or "name=": U-Boot unsets it
      p += at(p) === EQUALS ? 2 : 1;
      continue;
    }
    p++;
    const value: number[] = [];
    for (; at(p) !== NUL; p++) {
      if (at(p) === BACKSLASH && at(p + 1) !== NUL) p++;
      value.push(at(p));
    }
    p++;
    if (name === '')
      throw new UbootEnvError(
        'ENV_MALFORMED',
        `environment entry at byte ${nameStart + UBOOT_ENV_HEADER_SIZE} has an empty name`,
      );
    vars.set(name, Buffer.from(value).toString('utf8'));
  } while (p < data.length && at(p) !== NUL);
  return Object.fromEntries(vars);
}

function hex32(n: number): string {
  return n.toString(16).padStart(8, '0');
}
