import { DeltaError } from './bsdiff40-format.js';

/** Where compressed bytes come from: a node FileHandle fits (positional reads). */
export interface PositionalSource {
  read(
    buffer: Uint8Array,
    offset: number,
    length: number,
    position: number,
  ): Promise<{ bytesRead: number }>;
}

const BLOCK_MAGIC_HI = 0x314159;
const BLOCK_MAGIC_LO = 0x265359;
const END_MAGIC_HI = 0x177245;
const END_MAGIC_LO = 0x385090;
const MAX_GROUPS = 6;
const MAX_ALPHA = 258;
const MAX_CODE_LEN = 20;
const MAX_SELECTORS = 18002;
const GROUP_SIZE = 50;
/** Huffman codes up to this many bits decode with one table look-up. */
const LOOKUP_BITS = 10;

const CRC_TABLE = (() => {
  const table = new Int32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i << 24;
    for (let k = 0; k < 8; k++) c = c & 0x80000000 ? (c << 1) ^ 0x04c11db7 : c << 1;
    table[i] = c;
  }
  return table;
})();

/** Thrown inside a block's decoding when the input window ends before the block does. */
const NEED_MORE_INPUT = new Error('bzip2 block reaches past the input window');

interface HuffmanGroup {
  lookup: Int32Array;
  limit: Int32Array;
  base: Int32Array;
  perm: Int32Array;
  maxLen: number;
}

/**
 * A streaming bzip2 decoder over one stream at [start, end) of a file: the bytes come
 * in with positional reads, one block (at most 900 kB before its final run-length step) is
 * decoded at a time, and output is pulled with read(). Memory: about 5 bytes per byte of
 * block size (under 5 MB at -9), whatever the stream's length. Each block's CRC is checked
 * before any of its bytes are handed out, and the stream's combined CRC at its end.
 */
export class Bzip2Reader {
  readonly #source: PositionalSource;
  readonly #start: number;
  readonly #end: number;
  readonly #name: string;

  // Input window: #input[0, #inputLength) holds the stream's bytes from #inputStart on.
  #input = new Uint8Array(0);
  #inputStart = 0;
  #inputLength = 0;
  #pos = 0;
  #acc = 0;
  #bits = 0;
  #padBytes = 0;

  #blockSize100k = 0;
  #combinedCrc = 0;
  #ended = false;
  #tt = new Uint32Array(0);

  // Output state of the current block (after its inverse BWT).
  #tPos = 0;
  #left = 0;
  #last = -1;
  #runLength = 0;
  #repeatCount = 0;
  #repeatByte = 0;

  /** Total bytes handed out so far. */
  bytesOut = 0;

  constructor(source: PositionalSource, start: number, end: number, name: string) {
    this.#source = source;
    this.#start = start;
    this.#end = end;
    this.#name = name;
  }

  /** Fills dest[offset, offset + length) as far as the stream goes; returns the count. */
  async read(dest: Uint8Array, offset: number, length: number): Promise<number> {
    let at = offset;
    const end = offset + length;
    while (at < end) {
      if (this.#left > 0 || this.#repeatCount > 0) {
        at = this.#produce(dest, at, end);
      } else if (this.#ended) {
        break;
      } else {
        await this.#nextBlock();
      }
    }
    this.bytesOut += at - offset;
    return at - offset;
  }

  /** Reads exactly length bytes or fails naming what was being read. */
  async readFully(dest: Uint8Array, offset: number, length: number, what: string): Promise<void> {
    const got = await this.read(dest, offset, length);
    if (got < length) {
      throw new DeltaError(
        'TRUNCATED',
        `${this.#name} ended after ${this.bytesOut} bytes, in the middle of ${what}`,
      );
    }
  }

  /**
   * Reads on to the stream's end, so that its end marker and whole-stream CRC are checked:
   * a delta cut inside its last stream's trailer is refused, not taken as whole.
   */
  async finish(): Promise<void> {
    const scratch = new Uint8Array(1 << 16);
    while ((await this.read(scratch, 0, scratch.length)) > 0);
  }

  #corrupt(detail: string): DeltaError {
    return new DeltaError('BZIP2_CORRUPT', `${this.#name}: corrupt bzip2 data: ${detail}`);
  }

  /** Makes sure at least `lookahead` bytes past #pos are in the window, or all that is left. */
  async #fill(lookahead: number): Promise<void> {
    const unread = this.#inputLength - this.#pos;
    const sectionLength = this.#end - this.#start;
    const absolutePos = this.#inputStart + this.#pos;
    const wanted = Math.min(lookahead, sectionLength - absolutePos);
    if (unread >= wanted) return;
    if (this.#input.length < wanted) {
      const bigger = new Uint8Array(Math.max(wanted, 2 * this.#input.length));
      bigger.set(this.#input.subarray(this.#pos, this.#inputLength));
      this.#input = bigger;
    } else {
      this.#input.copyWithin(0, this.#pos, this.#inputLength);
    }
    this.#inputStart = absolutePos;
    this.#inputLength = unread;
    this.#pos = 0;
    while (this.#inputLength < wanted) {
      const { bytesRead } = await this.#source.read(
        this.#input,
        this.#inputLength,
        wanted - this.#inputLength,
        this.#start + this.#inputStart + this.#inputLength,
      );
      if (bytesRead === 0) {
        throw new DeltaError('TRUNCATED', `${this.#name}: the delta file ends early`);
      }
      this.#inputLength += bytesRead;
    }
  }

  #sectionExhausted(): boolean {
    return this.#inputStart + this.#inputLength >= this.#end - this.#start;
  }

  /** Reads n <= 24 bits. */
  #take(n: number): number {
    while (this.#bits < n) this.#loadByte();
    this.#bits -= n;
    return (this.#acc >>> this.#bits) & ((1 << n) - 1);
  }

  #loadByte(): void {
    if (this.#pos < this.#inputLength) {
      this.#acc = (this.#acc << 8) | this.#input[this.#pos++]!;
    } else if (!this.#sectionExhausted()) {
      throw NEED_MORE_INPUT;
    } else {
      this.#acc <<= 8;
      this.#padBytes++;
    }
    this.#bits += 8;
  }

  /** True when the bits consumed so far reach past the stream's last real byte. */
  #overran(): boolean {
    return this.#padBytes * 8 > this.#bits;
  }

  async #readStreamHeader(): Promise<void> {
    await this.#fill(4);
    if (this.#inputLength < 4) {
      throw new DeltaError('TRUNCATED', `${this.#name}: empty or cut short before its header`);
    }
    const header = this.#input.subarray(0, 4);
    const level = header[3]! - 0x30;
    if (header[0] !== 0x42 || header[1] !== 0x5a || header[2] !== 0x68 || level < 1 || level > 9) {
      throw this.#corrupt('no BZh header');
    }
    this.#pos = 4;
    this.#blockSize100k = level;
    this.#tt = new Uint32Array(level * 100_000);
  }

  async #nextBlock(): Promise<void> {
    if (this.#blockSize100k === 0) await this.#readStreamHeader();
    let lookahead = this.#blockSize100k * 125_000 + 65_536;
    for (;;) {
      await this.#fill(lookahead);
      const saved = { pos: this.#pos, acc: this.#acc, bits: this.#bits, pad: this.#padBytes };
      try {
        this.#decodeBlockOrEnd();
        return;
      } catch (error) {
        if (error !== NEED_MORE_INPUT) {
          if (this.#overran()) {
            throw new DeltaError('TRUNCATED', `${this.#name}: the bzip2 stream is cut short`);
          }
          throw error;
        }
        this.#pos = saved.pos;
        this.#acc = saved.acc;
        this.#bits = saved.bits;
        this.#padBytes = saved.pad;
        lookahead *= 2;
      }
    }
  }

  #decodeBlockOrEnd(): void {
    const magicHi = this.#take(24);
    const magicLo = this.#take(24);
    if (magicHi === END_MAGIC_HI && magicLo === END_MAGIC_LO) {
      const storedCrc = this.#take(16) * 0x10000 + this.#take(16);
      if (this.#overran()) throw new DeltaError('TRUNCATED', `${this.#name}: cut short`);
      if (storedCrc !== this.#combinedCrc) {
        throw new DeltaError('BZIP2_CRC', `${this.#name}: stream CRC mismatch`);
      }
      this.#ended = true;
      return;
    }
    if (magicHi !== BLOCK_MAGIC_HI || magicLo !== BLOCK_MAGIC_LO) {
      throw this.#corrupt('bad block magic');
    }
    const blockCrc = this.#take(16) * 0x10000 + this.#take(16);
    const nblock = this.#decodeBlockBody();
    if (this.#overran()) throw new DeltaError('TRUNCATED', `${this.#name}: cut short`);
    const crc = this.#blockCrc(nblock);
    if (crc !== blockCrc) {
      throw new DeltaError(
        'BZIP2_CRC',
        `${this.#name}: block CRC mismatch (stored ${blockCrc.toString(16)}, computed ${crc.toString(16)})`,
      );
    }
    this.#combinedCrc = (((this.#combinedCrc << 1) | (this.#combinedCrc >>> 31)) ^ blockCrc) >>> 0;
  }

  /** Huffman + MTF + inverse BWT of one block into #tt; sets the output state. */
  #decodeBlockBody(): number {
    if (this.#take(1) !== 0) throw this.#corrupt('randomised blocks are not supported');
    const origPtr = this.#take(24);
    const nblockMax = this.#blockSize100k * 100_000;
    if (origPtr > nblockMax + 10) throw this.#corrupt('origPtr out of range');

    const seqToUnseq = new Uint8Array(256);
    let numInUse = 0;
    const inUse16 = this.#take(16);
    for (let i = 0; i < 16; i++) {
      if ((inUse16 & (0x8000 >>> i)) === 0) continue;
      const used = this.#take(16);
      for (let j = 0; j < 16; j++) {
        if ((used & (0x8000 >>> j)) !== 0) seqToUnseq[numInUse++] = i * 16 + j;
      }
    }
    if (numInUse === 0) throw this.#corrupt('no symbols in use');
    const alphaSize = numInUse + 2;

    const nGroups = this.#take(3);
    if (nGroups < 2 || nGroups > MAX_GROUPS) throw this.#corrupt('bad number of Huffman groups');
    const nSelectors = this.#take(15);
    if (nSelectors < 1) throw this.#corrupt('no selectors');
    const selectors = new Uint8Array(Math.min(nSelectors, MAX_SELECTORS));
    const groupMtf = [0, 1, 2, 3, 4, 5];
    for (let i = 0; i < nSelectors; i++) {
      let j = 0;
      while (this.#take(1) === 1) {
        if (++j >= nGroups) throw this.#corrupt('bad selector');
      }
      if (i < MAX_SELECTORS) {
        const group = groupMtf[j]!;
        for (let k = j; k > 0; k--) groupMtf[k] = groupMtf[k - 1]!;
        groupMtf[0] = group;
        selectors[i] = group;
      }
    }

    const groups: HuffmanGroup[] = [];
    const lengths = new Uint8Array(MAX_ALPHA);
    for (let t = 0; t < nGroups; t++) {
      let current = this.#take(5);
      for (let i = 0; i < alphaSize; i++) {
        for (;;) {
          if (current < 1 || current > MAX_CODE_LEN) throw this.#corrupt('bad code length');
          if (this.#take(1) === 0) break;
          current += this.#take(1) === 0 ? 1 : -1;
        }
        lengths[i] = current;
      }
      groups.push(buildHuffmanGroup(lengths, alphaSize));
    }

    // Symbols: run lengths (RUNA/RUNB) and move-to-front indexes, into #tt's low bytes.
    const tt = this.#tt;
    const input = this.#input;
    const inputLength = this.#inputLength;
    const counts = new Int32Array(256);
    const mtf = new MoveToFront();
    const endOfBlock = numInUse + 1;
    let acc = this.#acc;
    let bits = this.#bits;
    let pos = this.#pos;
    let nblock = 0;
    let groupIndex = -1;
    let groupLeft = 0;
    let group = groups[0]!;
    let runLength = -1;
    let runWeight = 1;
    try {
      for (;;) {
        if (groupLeft === 0) {
          if (++groupIndex >= selectors.length) throw this.#corrupt('ran out of selectors');
          group = groups[selectors[groupIndex]!]!;
          groupLeft = GROUP_SIZE;
        }
        groupLeft--;
        while (bits < 24) {
          if (pos < inputLength) {
            acc = (acc << 8) | input[pos++]!;
          } else if (!this.#sectionExhausted()) {
            throw NEED_MORE_INPUT;
          } else {
            acc <<= 8;
            this.#padBytes++;
          }
          bits += 8;
        }
        let symbol: number;
        const entry = group.lookup[(acc >>> (bits - LOOKUP_BITS)) & ((1 << LOOKUP_BITS) - 1)]!;
        if (entry >= 0) {
          bits -= entry & 31;
          symbol = entry >>> 5;
        } else {
          let length = LOOKUP_BITS + 1;
          let code = (acc >>> (bits - length)) & ((1 << length) - 1);
          while (length <= group.maxLen && code > group.limit[length]!) {
            length++;
            code = (acc >>> (bits - length)) & ((1 << length) - 1);
          }
          if (length > group.maxLen) throw this.#corrupt('bad Huffman code');
          const index = code - group.base[length]!;
          if (index < 0 || index >= alphaSize) throw this.#corrupt('bad Huffman code');
          bits -= length;
          symbol = group.perm[index]!;
        }

        if (symbol <= 1) {
          // RUNA adds 1x, RUNB 2x the current weight; the run repeats the front symbol.
          if (runLength < 0) {
            runLength = 0;
            runWeight = 1;
          }
          if (runWeight >= 2 * 1024 * 1024) throw this.#corrupt('run too long');
          runLength += (symbol + 1) * runWeight;
          runWeight <<= 1;
          continue;
        }
        if (runLength > 0) {
          const byte = seqToUnseq[mtf.front()]!;
          if (nblock + runLength > nblockMax) throw this.#corrupt('block overflows');
          counts[byte]! += runLength;
          tt.fill(byte, nblock, nblock + runLength);
          nblock += runLength;
        }
        runLength = -1;
        if (symbol === endOfBlock) break;
        if (nblock >= nblockMax) throw this.#corrupt('block overflows');
        const byte = seqToUnseq[mtf.take(symbol - 1)]!;
        counts[byte]!++;
        tt[nblock++] = byte;
      }
    } finally {
      this.#acc = acc;
      this.#bits = bits;
      this.#pos = pos;
    }
    if (origPtr >= nblock) throw this.#corrupt('origPtr out of range');

    // Inverse BWT: each entry's high 24 bits become the index of the next byte.
    const next = new Int32Array(256);
    for (let i = 0, sum = 0; i < 256; i++) {
      next[i] = sum;
      sum += counts[i]!;
    }
    for (let i = 0; i < nblock; i++) {
      const byte = tt[i]! & 0xff;
      tt[next[byte]!]! |= i << 8;
      next[byte]!++;
    }
    this.#tPos = tt[origPtr]! >>> 8;
    this.#left = nblock;
    this.#last = -1;
    this.#runLength = 0;
    this.#repeatCount = 0;
    return nblock;
  }

  /** CRC of the block's output (after the final run-length step), walked without writing it. */
  #blockCrc(nblock: number): number {
    const tt = this.#tt;
    let tPos = this.#tPos;
    let crc = -1;
    let last = -1;
    let runLength = 0;
    for (let i = 0; i < nblock; i++) {
      const t = tt[tPos]!;
      const byte = t & 0xff;
      tPos = t >>> 8;
      if (runLength === 4) {
        for (let k = 0; k < byte; k++) crc = (crc << 8) ^ CRC_TABLE[(crc >>> 24) ^ last]!;
        runLength = 0;
        continue;
      }
      crc = (crc << 8) ^ CRC_TABLE[(crc >>> 24) ^ byte]!;
      if (byte === last) {
        runLength++;
      } else {
        last = byte;
        runLength = 1;
      }
    }
    return ~crc >>> 0;
  }

  /** Writes the current block's output into dest[at, end); returns where it stopped. */
  #produce(dest: Uint8Array, start: number, end: number): number {
    let at = start;
    if (this.#repeatCount > 0) {
      const n = Math.min(this.#repeatCount, end - at);
      dest.fill(this.#repeatByte, at, at + n);
      at += n;
      this.#repeatCount -= n;
      if (this.#repeatCount > 0) return at;
    }
    const tt = this.#tt;
    let tPos = this.#tPos;
    let left = this.#left;
    let last = this.#last;
    let runLength = this.#runLength;
    while (at < end && left > 0) {
      const t = tt[tPos]!;
      const byte = t & 0xff;
      tPos = t >>> 8;
      left--;
      if (runLength === 4) {
        runLength = 0;
        const n = Math.min(byte, end - at);
        dest.fill(last, at, at + n);
        at += n;
        if (n < byte) {
          this.#repeatCount = byte - n;
          this.#repeatByte = last;
        }
        continue;
      }
      dest[at++] = byte;
      if (byte === last) {
        runLength++;
      } else {
        last = byte;
        runLength = 1;
      }
    }
    this.#tPos = tPos;
    this.#left = left;
    this.#last = last;
    this.#runLength = runLength;
    return at;
  }
}

const MTF_LIST = 16;
const MTF_AREA = 4096;

/**
 * The move-to-front list of 256 symbols kept as 16 lists of 16 in a larger area, as bzip2
 * does: moving an entry to the front shifts at most 16 entries and the lists' start marks,
 * instead of up to 255 entries (random data would otherwise cost ~128 moves per byte).
 */
class MoveToFront {
  readonly #area = new Uint8Array(MTF_AREA);
  readonly #base = new Int32Array(256 / MTF_LIST);

  constructor() {
    this.#compact(true);
  }

  front(): number {
    return this.#area[this.#base[0]!]!;
  }

  /** Returns the entry at index and moves it to the front. */
  take(index: number): number {
    const area = this.#area;
    const base = this.#base;
    if (index < MTF_LIST) {
      const start = base[0]!;
      const value = area[start + index]!;
      area.copyWithin(start + 1, start, start + index);
      area[start] = value;
      return value;
    }
    let list = index >> 4;
    let p = base[list]! + (index & 15);
    const value = area[p]!;
    for (; p > base[list]!; p--) area[p] = area[p - 1]!;
    base[list]!++;
    for (; list > 0; list--) {
      base[list]!--;
      area[base[list]!] = area[base[list - 1]! + MTF_LIST - 1]!;
    }
    base[0]!--;
    area[base[0]!] = value;
    if (base[0] === 0) this.#compact(false);
    return value;
  }

  /** Packs the 16 lists at the area's end again (or fills it with 0..255 the first time). */
  #compact(initial: boolean): void {
    let k = MTF_AREA - 1;
    for (let list = 256 / MTF_LIST - 1; list >= 0; list--) {
      for (let j = MTF_LIST - 1; j >= 0; j--) {
        this.#area[k] = initial ? list * MTF_LIST + j : this.#area[this.#base[list]! + j]!;
        k--;
      }
      this.#base[list] = k + 1;
    }
  }
}

/** Canonical Huffman decoding tables for one group, as bzip2 assigns its codes. */
function buildHuffmanGroup(lengths: Uint8Array, alphaSize: number): HuffmanGroup {
  let minLen = MAX_CODE_LEN;
  let maxLen = 0;
  for (let i = 0; i < alphaSize; i++) {
    minLen = Math.min(minLen, lengths[i]!);
    maxLen = Math.max(maxLen, lengths[i]!);
  }
  const perm = new Int32Array(MAX_ALPHA);
  let p = 0;
  for (let length = minLen; length <= maxLen; length++) {
    for (let j = 0; j < alphaSize; j++) if (lengths[j] === length) perm[p++] = j;
  }
  const countBelow = new Int32Array(MAX_CODE_LEN + 2);
  for (let i = 0; i < alphaSize; i++) countBelow[lengths[i]! + 1]!++;
  for (let i = 1; i < countBelow.length; i++) countBelow[i]! += countBelow[i - 1]!;
  const limit = new Int32Array(MAX_CODE_LEN + 2).fill(-1);
  const base = new Int32Array(MAX_CODE_LEN + 2);
  let code = 0;
  for (let length = minLen; length <= maxLen; length++) {
    code += countBelow[length + 1]! - countBelow[length]!;
    limit[length] = code - 1;
    code <<= 1;
  }
  base[minLen] = countBelow[minLen]!;
  for (let length = minLen + 1; length <= maxLen; length++) {
    base[length] = ((limit[length - 1]! + 1) << 1) - countBelow[length]!;
  }

  const lookup = new Int32Array(1 << LOOKUP_BITS).fill(-1);
  for (let length = Math.min(maxLen, LOOKUP_BITS); length >= minLen; length--) {
    const count = countBelow[length + 1]! - countBelow[length]!;
    for (let k = 0; k < count; k++) {
      const c = limit[length]! - count + 1 + k;
      if (c < 0 || c >= 1 << length) continue; // an oversubscribed code: decoding will fail
      const symbol = perm[c - base[length]!]!;
      const shift = LOOKUP_BITS - length;
      lookup.fill((symbol << 5) | length, c << shift, (c + 1) << shift);
    }
  }
  return { lookup, limit, base, perm, maxLen };
}
