import { open } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { syncDirectory } from './atomic-file.js';
import { UbootEnvError, decodeUbootEnv, encodeUbootEnv } from './uboot-env.js';

/** The A/B state's two copies on the boot partition (DESIGN.md contract 2). */
export const AB_STATE_FILE_NAMES = ['abstate1.env', 'abstate2.env'] as const;
/** Each copy's size: the boot script's `env export -c -s 0x1000` and `env import -c ... 0x1000`. */
export const AB_STATE_SIZE = 0x1000;
/** The variable that orders the copies: the valid copy with the highest one is current. Hex, as setexpr writes it. */
export const AB_SEQUENCE_KEY = 'ab_seq';

export type EnvCopyNumber = 1 | 2;

/** What one copy held when it was last read. */
export interface EnvCopyStatus {
  copy: EnvCopyNumber;
  path: string;
  /** Set when the copy is usable; undefined when `problem` says why not. */
  sequence?: number;
  problem?: string;
}

export interface RedundantEnvState {
  vars: Record<string, string>;
  sequence: number;
  /** The copy the state came from. */
  copy: EnvCopyNumber;
  /** Both copies, for diagnostics (a copy with a bad CRC is worth reporting). */
  copies: [EnvCopyStatus, EnvCopyStatus];
}

/** Neither copy is usable; the caller decides on defaults. */
export class NoValidEnvCopyError extends Error {
  readonly code = 'ENV_NO_VALID_COPY';
  readonly copies: [EnvCopyStatus, EnvCopyStatus];

  constructor(copies: [EnvCopyStatus, EnvCopyStatus]) {
    super(`no valid environment copy: ${copies.map((c) => `${c.path}: ${c.problem}`).join('; ')}`);
    this.name = 'NoValidEnvCopyError';
    this.copies = copies;
  }
}

export interface RedundantEnvOptions {
  /** Bytes per copy; AB_STATE_SIZE by default. */
  size?: number;
  sequenceKey?: string;
  /** How the sequence number is written: 16 by default, as the boot script's setexpr writes it (`%lx`). */
  sequenceRadix?: 10 | 16;
}

interface ScannedCopy {
  status: EnvCopyStatus;
  vars?: Record<string, string>;
  exists: boolean;
}

/**
 * A U-Boot environment kept as two files so that a power cut during a write leaves one good
 * copy: a write always goes, in place, to the copy that is not the newest valid one.
 */
export class RedundantEnvFile {
  readonly paths: readonly [string, string];
  readonly size: number;
  readonly sequenceKey: string;
  readonly sequenceRadix: 10 | 16;

  constructor(paths: readonly [string, string], options: RedundantEnvOptions = {}) {
    this.paths = paths;
    this.size = options.size ?? AB_STATE_SIZE;
    this.sequenceKey = options.sequenceKey ?? AB_SEQUENCE_KEY;
    this.sequenceRadix = options.sequenceRadix ?? 16;
  }

  /** The A/B state files in the folder where the boot partition is mounted. */
  static abState(bootDir = '/boot', options?: RedundantEnvOptions): RedundantEnvFile {
    return new RedundantEnvFile(
      [join(bootDir, AB_STATE_FILE_NAMES[0]), join(bootDir, AB_STATE_FILE_NAMES[1])],
      options,
    );
  }

  /** The newest valid copy (a tie goes to copy 1); NoValidEnvCopyError when neither is. */
  async read(): Promise<RedundantEnvState> {
    const scanned = await this.scan();
    const newest = newestOf(scanned);
    const copies: [EnvCopyStatus, EnvCopyStatus] = [scanned[0].status, scanned[1].status];
    if (!newest) throw new NoValidEnvCopyError(copies);
    return {
      vars: newest.vars!,
      sequence: newest.status.sequence!,
      copy: newest.status.copy,
      copies,
    };
  }

  /**
   * Stores `vars` with the sequence set to the newest valid copy's plus one, overwriting the
   * other copy in place. Bad names, values or sizes throw before anything is written.
   */
  async write(vars: Record<string, string>): Promise<{ copy: EnvCopyNumber; sequence: number }> {
    const scanned = await this.scan();
    const newest = newestOf(scanned);
    const sequence = (newest?.status.sequence ?? 0) + 1;
    const target = newest?.status.copy === 1 ? scanned[1] : scanned[0];
    const block = encodeUbootEnv(
      { ...vars, [this.sequenceKey]: sequence.toString(this.sequenceRadix) },
      this.size,
    );
    await writeInPlace(target.status.path, block, target.exists);
    return { copy: target.status.copy, sequence };
  }

  /** Read, change some variables ('' or undefined unsets one), write. */
  async update(changes: Record<string, string | undefined>): Promise<RedundantEnvState> {
    const current = await this.read();
    const vars = { ...current.vars };
    for (const [name, value] of Object.entries(changes)) {
      if (value === undefined || value === '') delete vars[name];
      else vars[name] = value;
    }
    await this.write(vars);
    return this.read();
  }

  private async scan(): Promise<[ScannedCopy, ScannedCopy]> {
    return Promise.all([this.scanCopy(1), this.scanCopy(2)]);
  }

  private async scanCopy(copy: EnvCopyNumber): Promise<ScannedCopy> {
    const path = this.paths[copy - 1]!;
    let block: Buffer;
    try {
      block = await readUpTo(path, this.size);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      const exists = code !== 'ENOENT';
      return {
        exists,
        status: { copy, path, problem: code === 'ENOENT' ? 'missing' : String(error) },
      };
    }
    if (block.length < this.size) {
      return {
        exists: true,
        status: { copy, path, problem: `short: ${block.length} of ${this.size} bytes` },
      };
    }
    let vars: Record<string, string>;
    try {
      vars = decodeUbootEnv(block);
    } catch (error) {
      if (!(error instanceof UbootEnvError)) throw error;
      return { exists: true, status: { copy, path, problem: error.message } };
    }
    const sequence = parseSequence(vars[this.sequenceKey], this.sequenceRadix);
    if (typeof sequence === 'string') {
      return { exists: true, status: { copy, path, problem: `${this.sequenceKey} ${sequence}` } };
    }
    return { exists: true, vars, status: { copy, path, sequence } };
  }
}

function newestOf(scanned: [ScannedCopy, ScannedCopy]): ScannedCopy | undefined {
  const [first, second] = scanned;
  if (first.vars === undefined) return second.vars === undefined ? undefined : second;
  if (second.vars === undefined) return first;
  return second.status.sequence! > first.status.sequence! ? second : first;
}

/** The sequence number, 0 when the variable is absent, or what is wrong with it. */
function parseSequence(text: string | undefined, radix: 10 | 16): number | string {
  if (text === undefined) return 0;
  const digits = radix === 16 ? text.replace(/^0x/i, '') : text;
  const pattern = radix === 16 ? /^[0-9a-f]{1,13}$/i : /^[0-9]{1,15}$/;
  if (!pattern.test(digits))
    return `${JSON.stringify(text)} is not a base-${radix} sequence number`;
  return parseInt(digits, radix);
}

async function readUpTo(path: string, size: number): Promise<Buffer> {
  const handle = await open(path, 'r');
  try {
    const block = Buffer.alloc(size);
    let done = 0;
    while (done < size) {
      const { bytesRead } = await handle.read(block, done, size - done, done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return block.subarray(0, done);
  } finally {
    await handle.close();
  }
}

/** FAT has no atomic rename: overwrite the same clusters, never truncate or recreate. */
async function writeInPlace(path: string, block: Buffer, exists: boolean): Promise<void> {
  const handle = await open(path, exists ? 'r+' : 'wx');
  try {
    let done = 0;
    while (done < block.length) {
      const { bytesWritten } = await handle.write(block, done, block.length - done, done);
      done += bytesWritten;
    }
    await handle.sync();
  } finally {
    await handle.close();
  }
  if (!exists) await syncDirectory(dirname(path));
}
