/**
 * An index of the old file for the delta generator: the positions of fixed-size windows taken
 * every `stride` bytes, by a rolling-hash-compatible hash, in a chained hash table with capped
 * buckets. Windows that are one repeated byte (zeros, 0xff padding) are not indexed: they
 * would flood single buckets and match everywhere. Instead the longest run of each byte value
 * is kept, for the matcher to pair runs in the new file with.
 */

/** Multiplier of the polynomial window hash; odd, so that the hash rolls mod 2^32. */
const HASH_BASE = 0x01000193;
/** Knuth's golden-ratio multiplier spreads the polynomial hash over the table's top bits. */
const HASH_MIX = 0x9e3779b1;

export interface IndexParameters {
  /** Always twice the stride: a window is two chunks. */
  windowSize: number;
  stride: number;
  /** At most this many positions per bucket (the first ones in the file). */
  bucketCap: number;
}

/**
 * Window sizes that keep the index under 8M entries (about 64 MB). Each insert is a cache and
 * TLB miss (~300 ns measured in a VM), so the index's size is what the generator's time
 * mostly is: at 256 MiB this indexes every 32nd position, finding every match of 95 bytes and
 * more anywhere; shorter ones come from the nearby index.
 */
export function indexParametersFor(oldSize: number): IndexParameters {
  let stride = 8;
  while (Math.floor(Math.max(oldSize - 2 * stride, 0) / stride) + 1 >= 1 << 23) stride *= 2;
  return { windowSize: 2 * stride, stride, bucketCap: 8 };
}

function power(base: number, exponent: number): number {
  let result = 1;
  for (let i = 0; i < exponent; i++) result = Math.imul(result, base);
  return result;
}

/** Hash of data[at, at + windowSize). */
export function windowHash(data: Uint8Array, at: number, windowSize: number): number {
  let hash = 0;
  for (let i = 0; i < windowSize; i++) hash = (Math.imul(hash, HASH_BASE) + data[at + i]!) | 0;
  return hash;
}

/** HASH_BASE^(windowSize - 1) mod 2^32: what the byte leaving a rolling window weighs. */
export function leavingWeight(windowSize: number): number {
  return power(HASH_BASE, windowSize - 1);
}

/** The hash of the window one byte further on. */
export function rollHash(hash: number, leaving: number, entering: number, weight: number): number {
  return (Math.imul((hash - Math.imul(leaving, weight)) | 0, HASH_BASE) + entering) | 0;
}

export class OldFileIndex {
  readonly parameters: IndexParameters;
  readonly #old: Uint8Array;
  readonly #tableBits: number;
  readonly #heads: Int32Array;
  readonly #next: Int32Array;
  /** Longest run of each byte value in the old file: start and length (0 when none). */
  readonly runStart = new Float64Array(256);
  readonly runLength = new Float64Array(256);

  constructor(
    old: Uint8Array,
    parameters: IndexParameters,
    onProgress?: (bytesDone: number) => void,
  ) {
    this.#old = old;
    this.parameters = parameters;
    const { windowSize, stride, bucketCap } = parameters;
    if (windowSize !== 2 * stride) throw new RangeError('index window must be twice its stride');
    const entries =
      old.length >= windowSize ? Math.floor((old.length - windowSize) / stride) + 1 : 0;
    this.#tableBits = Math.max(10, Math.ceil(Math.log2(Math.max(entries, 1))));
    // A head holds its bucket's size in the top byte, the newest entry (+1, 0 for none) below:
    // one cache miss per insert instead of two. Hence at most 2^24 entries.
    if (entries >= 1 << 24 || bucketCap > 255) throw new RangeError('index too large');
    this.#heads = new Int32Array(1 << this.#tableBits);
    this.#next = new Int32Array(entries);
    // A window is two stride-sized chunks: hash each chunk once, combine neighbours.
    const chunkWeight = power(HASH_BASE, stride);
    let runEnd = 0;
    let chunkHash = 0;
    let chunkDiffers = 0;
    for (let i = 0; i < Math.min(stride, old.length); i++) {
      chunkHash = (Math.imul(chunkHash, HASH_BASE) + old[i]!) | 0;
      chunkDiffers |= old[i]! ^ old[0]!;
    }
    for (let entry = 0; entry < entries; entry++) {
      const at = entry * stride;
      if ((entry & 0xfffff) === 0) onProgress?.(at);
      const next = at + stride;
      const first = old[next]!;
      let followingHash = 0;
      let followingDiffers = 0;
      for (let i = next; i < next + stride; i++) {
        const byte = old[i]!;
        followingHash = (Math.imul(followingHash, HASH_BASE) + byte) | 0;
        followingDiffers |= byte ^ first;
      }
      const hash = (Math.imul(chunkHash, chunkWeight) + followingHash) | 0;
      const sameByte = (chunkDiffers | followingDiffers) === 0 && old[at] === first;
      chunkHash = followingHash;
      chunkDiffers = followingDiffers;
      if (sameByte) {
        if (at >= runEnd) runEnd = this.#recordRun(at, old[at]!);
        continue;
      }
      const bucket = this.bucketOf(hash);
      const head = this.#heads[bucket]!;
      if (head >>> 24 >= bucketCap) continue;
      this.#next[entry] = (head & 0xffffff) - 1;
      this.#heads[bucket] = (((head >>> 24) + 1) << 24) | (entry + 1);
    }
    onProgress?.(old.length);
  }

  /** Notes the run of `byte` through `at` if it is the longest so far; returns where it ends. */
  #recordRun(at: number, byte: number): number {
    const old = this.#old;
    let start = at;
    while (start > 0 && old[start - 1] === byte) start--;
    let end = at;
    while (end < old.length && old[end] === byte) end++;
    if (end - start > this.runLength[byte]!) {
      this.runStart[byte] = start;
      this.runLength[byte] = end - start;
    }
    return end;
  }

  bucketOf(hash: number): number {
    return Math.imul(hash, HASH_MIX) >>> (32 - this.#tableBits);
  }

  /** First indexed old position in the bucket of `hash`, or -1; go on with nextPosition. */
  firstPosition(hash: number): number {
    const entry = (this.#heads[this.bucketOf(hash)]! & 0xffffff) - 1;
    return entry < 0 ? -1 : entry * this.parameters.stride;
  }

  nextPosition(position: number): number {
    const entry = this.#next[position / this.parameters.stride]!;
    return entry < 0 ? -1 : entry * this.parameters.stride;
  }
}

/** Window of the nearby index: bsdiff takes a new alignment from 9 matching bytes on. */
export const NEARBY_WINDOW = 8;
/** Positions walked per look-up in the nearby index. */
const NEARBY_CHAIN = 16;

/**
 * A fine index (every position, 8-byte windows) of the old bytes around where the current
 * alignment points, rebuilt as that moves: the global index only finds matches of 2 windows
 * or more, but an edited file's new text mostly matches short phrases of its own old version,
 * which bsdiff's suffix array finds anywhere. Nearby is where they are.
 */
export class NearbyIndex {
  readonly #old: Uint8Array;
  readonly #radius: number;
  readonly #heads: Int32Array;
  readonly #next: Int32Array;
  readonly #bits: number;
  #start = 0;
  #end = -1;

  constructor(old: Uint8Array, radius: number) {
    this.#old = old;
    this.#radius = radius;
    this.#bits = Math.ceil(Math.log2(2 * radius));
    this.#heads = new Int32Array(1 << this.#bits);
    this.#next = new Int32Array(2 * radius);
  }

  /** Makes sure old positions within half the radius of `center` are indexed. */
  cover(center: number): void {
    const half = this.#radius >> 1;
    const wantStart = Math.max(0, center - half);
    const wantEnd = Math.min(this.#old.length, center + half);
    if (wantStart >= this.#start && wantEnd <= this.#end) return;
    this.#start = Math.max(0, center - this.#radius);
    this.#end = Math.min(this.#old.length, center + this.#radius);
    this.#heads.fill(-1);
    const old = this.#old;
    const weight = power(HASH_BASE, NEARBY_WINDOW - 1);
    const last = this.#end - NEARBY_WINDOW;
    if (last < this.#start) return;
    let hash = windowHash(old, this.#start, NEARBY_WINDOW);
    for (let p = this.#start; ; p++) {
      const bucket = this.#bucketOf(hash);
      this.#next[p - this.#start] = this.#heads[bucket]!;
      this.#heads[bucket] = p;
      if (p === last) break;
      hash = rollHash(hash, old[p]!, old[p + NEARBY_WINDOW]!, weight);
    }
  }

  #bucketOf(hash: number): number {
    return Math.imul(hash, HASH_MIX) >>> (32 - this.#bits);
  }

  /** Fills `into` with up to NEARBY_CHAIN positions whose window hash shares a bucket; returns the count. */
  candidates(hash: number, into: Int32Array): number {
    let p = this.#heads[this.#bucketOf(hash)]!;
    let count = 0;
    while (count < NEARBY_CHAIN && count < into.length && p >= 0) {
      into[count++] = p;
      p = this.#next[p - this.#start]!;
    }
    return count;
  }
}
