import { open, type FileHandle } from 'node:fs/promises';
import {
  BSDIFF40_CONTROL_SIZE,
  BSDIFF40_HEADER_SIZE,
  DeltaError,
  decodeBsdiff40Header,
  readOfftin,
} from './bsdiff40-format.js';
import { Bzip2Reader } from './bzip2-reader.js';

/** Bytes moved per step: the applier's memory is a few of these plus three bzip2 blocks. */
const CHUNK = 1 << 20;

export interface DeltaApplyProgress {
  bytesDone: number;
  bytesTotal: number;
}

export interface ApplyBsdiff40Options {
  /** The file (or block device) the delta was made from. */
  oldPath: string;
  /** How much of oldPath is the old image (a slot partition is larger); its size when absent. */
  oldSize?: number;
  patchPath: string;
  /** Created or truncated; or give newFd (an open block device, say) and newOffset. */
  newPath?: string;
  newFd?: FileHandle;
  newOffset?: number;
  /** The size the caller expects (from signed metadata): a delta declaring another is refused. */
  newSize?: number;
  /** fdatasync the new file before returning. */
  sync?: boolean;
  onProgress?: (progress: DeltaApplyProgress) => void;
  /** Stops the apply (with the signal's reason) before its next write once aborted. */
  signal?: AbortSignal;
}

/**
 * Applies a BSDIFF40 delta as stock bspatch does, streaming: the old file is read with
 * positional reads, the new one written front to back, the three bzip2 streams decoded
 * incrementally. Memory stays a few MB whatever the image size. A delta that is truncated,
 * corrupt or points outside the old file fails with a DeltaError, and nothing is ever
 * written past the declared new size.
 */
export async function applyBsdiff40Delta(
  options: ApplyBsdiff40Options,
): Promise<{ newSize: number }> {
  if ((options.newPath === undefined) === (options.newFd === undefined)) {
    throw new TypeError('applyBsdiff40Delta: give exactly one of newPath and newFd');
  }
  const handles: FileHandle[] = [];
  try {
    const patch = await open(options.patchPath, 'r');
    handles.push(patch);
    const old = await open(options.oldPath, 'r');
    handles.push(old);
    const patchLength = (await patch.stat()).size;
    const headerBytes = new Uint8Array(BSDIFF40_HEADER_SIZE);
    const { bytesRead } = await patch.read(headerBytes, 0, BSDIFF40_HEADER_SIZE, 0);
    const header = decodeBsdiff40Header(headerBytes.subarray(0, bytesRead), patchLength);
    if (options.newSize !== undefined && options.newSize !== header.newSize) {
      throw new DeltaError(
        'NEW_SIZE_MISMATCH',
        `delta makes ${header.newSize} bytes, expected ${options.newSize}`,
      );
    }
    const oldSize = options.oldSize ?? (await old.stat()).size;

    let output = options.newFd;
    if (output === undefined) {
      output = await open(options.newPath!, 'w');
      handles.push(output);
    }
    const diffStart = BSDIFF40_HEADER_SIZE + header.controlLength;
    const extraStart = diffStart + header.diffLength;
    const streams = {
      control: new Bzip2Reader(patch, BSDIFF40_HEADER_SIZE, diffStart, 'control stream'),
      diff: new Bzip2Reader(patch, diffStart, extraStart, 'diff stream'),
      extra: new Bzip2Reader(patch, extraStart, patchLength, 'extra stream'),
    };
    await patchInto(output, options.newOffset ?? 0, old, oldSize, header.newSize, streams, options);
    await Promise.all([streams.control.finish(), streams.diff.finish(), streams.extra.finish()]);
    if (options.sync) await output.datasync();
    return { newSize: header.newSize };
  } finally {
    await Promise.all(handles.map((handle) => handle.close()));
  }
}

interface Streams {
  control: Bzip2Reader;
  diff: Bzip2Reader;
  extra: Bzip2Reader;
}

async function patchInto(
  output: FileHandle,
  outputOffset: number,
  old: FileHandle,
  oldSize: number,
  newSize: number,
  streams: Streams,
  options: ApplyBsdiff40Options,
): Promise<void> {
  // Word-aligned buffers: the diff is added four bytes at a time.
  const chunk = new Uint8Array(new ArrayBuffer(CHUNK));
  const oldChunk = new Uint8Array(new ArrayBuffer(CHUNK));
  const chunkWords = new Uint32Array(chunk.buffer);
  const oldWords = new Uint32Array(oldChunk.buffer);
  const control = new Uint8Array(BSDIFF40_CONTROL_SIZE);
  let newPos = 0;
  let oldPos = 0;

  const write = async (length: number): Promise<void> => {
    options.signal?.throwIfAborted();
    let done = 0;
    while (done < length) {
      const { bytesWritten } = await output.write(
        chunk,
        done,
        length - done,
        outputOffset + newPos + done,
      );
      done += bytesWritten;
    }
    newPos += length;
    options.onProgress?.({ bytesDone: newPos, bytesTotal: newSize });
  };

  while (newPos < newSize) {
    await streams.control.readFully(control, 0, BSDIFF40_CONTROL_SIZE, 'a control triple');
    const diffLength = readOfftin(control, 0);
    const extraLength = readOfftin(control, 8);
    const seek = readOfftin(control, 16);
    if (diffLength < 0 || extraLength < 0) {
      throw new DeltaError(
        'BAD_CONTROL',
        `negative length in control triple at new byte ${newPos}`,
      );
    }
    if (newPos + diffLength + extraLength > newSize) {
      throw new DeltaError(
        'NEW_SIZE_EXCEEDED',
        `control triple at new byte ${newPos} writes ${diffLength + extraLength} bytes, past the new size ${newSize}`,
      );
    }
    if (diffLength > 0 && (oldPos < 0 || oldPos + diffLength > oldSize)) {
      throw new DeltaError(
        'OLD_RANGE',
        `control triple at new byte ${newPos} reads old bytes ${oldPos}..${oldPos + diffLength}, outside the old file's ${oldSize}`,
      );
    }

    for (let left = diffLength; left > 0;) {
      const n = Math.min(CHUNK, left);
      await streams.diff.readFully(chunk, 0, n, 'the diff bytes');
      await readOld(old, oldChunk, n, oldPos);
      addBytes(chunkWords, oldWords, chunk, oldChunk, n);
      await write(n);
      oldPos += n;
      left -= n;
    }
    for (let left = extraLength; left > 0;) {
      const n = Math.min(CHUNK, left);
      await streams.extra.readFully(chunk, 0, n, 'the extra bytes');
      await write(n);
      left -= n;
    }
    oldPos += seek;
  }
}

async function readOld(
  old: FileHandle,
  into: Uint8Array,
  length: number,
  position: number,
): Promise<void> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await old.read(into, done, length - done, position + done);
    if (bytesRead === 0) {
      throw new DeltaError(
        'OLD_RANGE',
        `the old file ends at byte ${position + done}, before the delta expects`,
      );
    }
    done += bytesRead;
  }
}

/**
 * chunk[i] += old[i] (mod 256) for i < length: four bytes per step, with no carry across bytes
 * (add the low seven bits, then put back each byte's top bit by xor).
 */
function addBytes(
  chunkWords: Uint32Array,
  oldWords: Uint32Array,
  chunk: Uint8Array,
  oldChunk: Uint8Array,
  length: number,
): void {
  const words = length >>> 2;
  for (let i = 0; i < words; i++) {
    const a = chunkWords[i]!;
    const b = oldWords[i]!;
    if (a === 0) {
      chunkWords[i] = b;
    } else {
      chunkWords[i] = ((a & 0x7f7f7f7f) + (b & 0x7f7f7f7f)) ^ ((a ^ b) & 0x80808080);
    }
  }
  for (let i = words << 2; i < length; i++) chunk[i] = chunk[i]! + oldChunk[i]!;
}
