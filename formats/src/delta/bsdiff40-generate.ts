import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { open, readFile, rename, rm } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import {
  BSDIFF40_CONTROL_SIZE,
  BSDIFF40_HEADER_SIZE,
  encodeBsdiff40Header,
  writeOfftout,
} from './bsdiff40-format.js';
import { COMPARE_BLOCK, sameBytes } from './byte-ranges.js';
import { matchSegments, type DeltaSegment, type MatchProgress } from './bsdiff40-matcher.js';

/** Bytes handed to a compressor at a time. */
const CHUNK = 1 << 20;

export type DeltaMakeProgress = MatchProgress;

export interface MakeBsdiff40Options {
  onProgress?: (progress: DeltaMakeProgress) => void;
  /** The bzip2 program that compresses the three blocks (Debian's, by default from PATH). */
  bzip2?: string;
}

export interface MakeBsdiff40Result {
  patchSize: number;
  newSize: number;
  /** Control triples written. */
  segments: number;
}

/**
 * Writes a BSDIFF40 delta from oldPath to newPath at outPath (via a temporary file and a
 * rename, so outPath is either whole or absent). Host side: both files are held in memory,
 * the three blocks stream through `bzip2 -9` processes into temporary files.
 */
export async function makeBsdiff40Delta(
  oldPath: string,
  newPath: string,
  outPath: string,
  options: MakeBsdiff40Options = {},
): Promise<MakeBsdiff40Result> {
  const [old, neu] = await Promise.all([readFile(oldPath), readFile(newPath)]);
  const parts = {
    control: `${outPath}.control.tmp`,
    diff: `${outPath}.diff.tmp`,
    extra: `${outPath}.extra.tmp`,
  };
  const partial = `${outPath}.tmp`;
  const bzip2 = options.bzip2 ?? 'bzip2';
  const compressors = {
    control: await Compressor.start(bzip2, parts.control),
    diff: await Compressor.start(bzip2, parts.diff),
    extra: await Compressor.start(bzip2, parts.extra),
  };
  try {
    const blocks: Blocks = {
      control: new BlockWriter(compressors.control),
      diff: new BlockWriter(compressors.diff),
      extra: new BlockWriter(compressors.extra),
    };
    let segments = 0;
    for (const segment of matchSegments(old, neu, options)) {
      segments++;
      await writeSegment(segment, old, neu, blocks);
    }
    const [controlLength, diffLength, extraLength] = await Promise.all([
      blocks.control.finish(),
      blocks.diff.finish(),
      blocks.extra.finish(),
    ]);
    const header = encodeBsdiff40Header({ controlLength, diffLength, newSize: neu.length });
    await concatenate(partial, header, [parts.control, parts.diff, parts.extra]);
    await rename(partial, outPath);
    return {
      patchSize: BSDIFF40_HEADER_SIZE + controlLength + diffLength + extraLength,
      newSize: neu.length,
      segments,
    };
  } finally {
    for (const compressor of Object.values(compressors)) compressor.abort();
    await Promise.all([...Object.values(parts), partial].map((path) => rm(path, { force: true })));
  }
}

interface Blocks {
  control: BlockWriter;
  diff: BlockWriter;
  extra: BlockWriter;
}

async function writeSegment(
  segment: DeltaSegment,
  old: Uint8Array,
  neu: Uint8Array,
  blocks: Blocks,
): Promise<void> {
  const control = await blocks.control.room(BSDIFF40_CONTROL_SIZE);
  writeOfftout(segment.diffLength, control.buffer, control.at);
  writeOfftout(segment.extraLength, control.buffer, control.at + 8);
  writeOfftout(segment.seek, control.buffer, control.at + 16);

  for (let done = 0; done < segment.diffLength;) {
    const { buffer, at, length } = await blocks.diff.room(1, segment.diffLength - done);
    const newStart = segment.newStart + done;
    const oldStart = segment.oldStart + done;
    // The buffer is fresh (zeros): equal blocks need no work.
    for (let i = 0; i < length;) {
      const n = Math.min(COMPARE_BLOCK, length - i);
      if (!sameBytes(neu, newStart + i, old, oldStart + i, n)) {
        for (let k = i; k < i + n; k++) buffer[at + k] = neu[newStart + k]! - old[oldStart + k]!;
      }
      i += n;
    }
    done += length;
  }
  const extraStart = segment.newStart + segment.diffLength;
  for (let done = 0; done < segment.extraLength;) {
    const { buffer, at, length } = await blocks.extra.room(1, segment.extraLength - done);
    buffer.set(neu.subarray(extraStart + done, extraStart + done + length), at);
    done += length;
  }
}

/** Gathers one block's bytes into 1 MiB pieces for its compressor. */
class BlockWriter {
  readonly #compressor: Compressor;
  #buffer = new Uint8Array(CHUNK);
  #used = 0;

  constructor(compressor: Compressor) {
    this.#compressor = compressor;
  }

  /** Space for at least `min` and at most `max` bytes, counted as written. */
  async room(min: number, max = min): Promise<{ buffer: Uint8Array; at: number; length: number }> {
    if (CHUNK - this.#used < min) await this.flush();
    const at = this.#used;
    const length = Math.min(max, CHUNK - at);
    this.#used += length;
    return { buffer: this.#buffer, at, length };
  }

  async flush(): Promise<void> {
    if (this.#used === 0) return;
    // A new buffer each time: the compressor's pipe may hold the old one after write().
    const full = this.#buffer.subarray(0, this.#used);
    this.#buffer = new Uint8Array(CHUNK);
    this.#used = 0;
    await this.#compressor.write(full);
  }

  async finish(): Promise<number> {
    await this.flush();
    return this.#compressor.finish();
  }
}

/** A `bzip2 -9` process writing one block of the delta into a file. */
class Compressor {
  readonly #child: ChildProcess;
  readonly #stdin: Writable;
  readonly #exited: Promise<number>;
  readonly #path: string;

  private constructor(child: ChildProcess, path: string) {
    if (child.stdin === null) throw new Error('bzip2 started without a stdin pipe');
    this.#child = child;
    this.#stdin = child.stdin;
    this.#path = path;
    this.#exited = new Promise((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', (code, signal) =>
        code === 0
          ? resolve(0)
          : reject(new Error(`${child.spawnfile} exited with ${code ?? signal}`)),
      );
    });
    // Keep an unhandled rejection from surfacing before someone awaits it.
    this.#exited.catch(() => undefined);
    this.#stdin.on('error', () => undefined);
  }

  static async start(bzip2: string, path: string): Promise<Compressor> {
    const out = await open(path, 'w');
    try {
      const child = spawn(bzip2, ['-9', '-c'], { stdio: ['pipe', out.fd, 'inherit'] });
      return new Compressor(child, path);
    } finally {
      await out.close();
    }
  }

  async write(bytes: Uint8Array): Promise<void> {
    if (!this.#stdin.write(bytes)) {
      await Promise.race([once(this.#stdin, 'drain'), this.#exited]);
    }
  }

  /** Ends the input; resolves to the compressed length once bzip2 has exited cleanly. */
  async finish(): Promise<number> {
    this.#stdin.end();
    await this.#exited;
    const handle = await open(this.#path, 'r');
    try {
      return (await handle.stat()).size;
    } finally {
      await handle.close();
    }
  }

  abort(): void {
    if (this.#child.exitCode === null && this.#child.signalCode === null) this.#child.kill();
  }
}

async function concatenate(path: string, header: Uint8Array, parts: string[]): Promise<void> {
  const out = await open(path, 'w');
  try {
    let position = 0;
    await out.write(header, 0, header.length, position);
    position += header.length;
    const buffer = new Uint8Array(CHUNK);
    for (const part of parts) {
      const input = await open(part, 'r');
      try {
        for (;;) {
          const { bytesRead } = await input.read(buffer, 0, CHUNK, null);
          if (bytesRead === 0) break;
          await out.write(buffer, 0, bytesRead, position);
          position += bytesRead;
        }
      } finally {
        await input.close();
      }
    }
    await out.sync();
  } finally {
    await out.close();
  }
}
