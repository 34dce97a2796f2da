/** WASI preview1's errno "file too large", and fd_seek's whence values. */
export const WASI_EFBIG = 22;
const WHENCE_SET = 0;
const WHENCE_CUR = 1;

type WasiFunction = (...args: unknown[]) => unknown;

/**
 * Bounds a WASI module's in-memory file system. @wasmer/wasi keeps its files in its own wasm
 * memory, inside the worker but outside every other limit (the worker's resourceLimits cover
 * the JS heap only). A call that names a file size or offset past `limitBytes` is refused with
 * EFBIG; and when the library's memory has grown by more than `limitBytes` since the start (many
 * files, many writes), `stop` ends the worker: a wasm memory is never given back.
 */
export class WasiFsLimit {
  readonly #limit: bigint;
  readonly #baseline: number;
  #guestMemory: WebAssembly.Memory | undefined;

  constructor(
    private readonly libraryMemory: WebAssembly.Memory,
    readonly limitBytes: number,
    private readonly stop: (reason: string) => never,
  ) {
    this.#limit = BigInt(limitBytes);
    this.#baseline = libraryMemory.buffer.byteLength;
  }

  /** Set once the instance exists (imports are made before it). */
  bindMemory(memory: WebAssembly.Memory): void {
    this.#guestMemory = memory;
  }

  /** What the library's memory has grown by since the start. */
  get usedBytes(): number {
    return this.libraryMemory.buffer.byteLength - this.#baseline;
  }

  /** Every WASI import checked before and after it runs; those that grow files also check their arguments. */
  wrap(wasiImports: WebAssembly.ModuleImports): WebAssembly.ModuleImports {
    const bounded = { ...wasiImports };
    for (const [name, value] of Object.entries(wasiImports)) {
      if (typeof value !== 'function') continue;
      const call = value as WasiFunction;
      const run = (args: unknown[]): unknown => {
        const [fd, a, b, c] = args;
        switch (name) {
          case 'fd_filestat_set_size':
            return this.#past(u64(a)) ? WASI_EFBIG : call(...args);
          case 'fd_allocate':
            return this.#past(u64(a) + u64(b)) ? WASI_EFBIG : call(...args);
          case 'fd_pwrite':
            return this.#past(u64(c) + this.#iovecBytes(a, b)) ? WASI_EFBIG : call(...args);
          case 'fd_seek':
            return this.#seek(call, fd, a, b, c);
          default:
            return call(...args);
        }
      };
      bounded[name] = (...args: unknown[]) => {
        this.#check();
        const result = run(args);
        this.#check();
        return result;
      };
    }
    return bounded;
  }

  #check(): void {
    const used = this.usedBytes;
    if (used > this.limitBytes) {
      this.stop(
        `the WASI file system took ${used} bytes, over its ${this.limitBytes} (quotas.memoryBytes)`,
      );
    }
  }

  #past(size: bigint): boolean {
    return size > this.#limit;
  }

  /** The sum of the iovec lengths, or more than any limit when they are not in guest memory. */
  #iovecBytes(iovs: unknown, count: unknown): bigint {
    const buffer = this.#guestMemory?.buffer;
    if (!buffer || typeof iovs !== 'number' || typeof count !== 'number') return 1n << 64n;
    if (iovs < 0 || count < 0 || iovs + count * 8 > buffer.byteLength) return 1n << 64n;
    const fields = new DataView(buffer, iovs, count * 8);
    let total = 0n;
    for (let at = 4; at < fields.byteLength; at += 8) total += BigInt(fields.getUint32(at, true));
    return total;
  }

  /** Seeks past the limit are refused (a write there would grow the file to it), the cursor kept. */
  #seek(seek: WasiFunction, fd: unknown, offset: unknown, whence: unknown, out: unknown): unknown {
    if (whence === WHENCE_SET)
      return this.#past(u64(offset)) ? WASI_EFBIG : seek(fd, offset, whence, out);
    const before = seek(fd, 0n, WHENCE_CUR, out);
    if (before !== 0) return before;
    const previous = this.#readU64(out);
    const errno = seek(fd, offset, whence, out);
    if (errno !== 0 || !this.#past(this.#readU64(out))) return errno;
    seek(fd, previous, WHENCE_SET, out);
    return WASI_EFBIG;
  }

  /** A u64 the library has just written at `at` (it checked the pointer). */
  #readU64(at: unknown): bigint {
    const buffer = this.#guestMemory?.buffer;
    if (!buffer || typeof at !== 'number' || at < 0 || at + 8 > buffer.byteLength) return 0n;
    return new DataView(buffer).getBigUint64(at, true);
  }
}

/** An i64 argument as the u64 WASI means (negative sizes are huge, not small). */
function u64(value: unknown): bigint {
  return typeof value === 'bigint' ? BigInt.asUintN(64, value) : 1n << 64n;
}
