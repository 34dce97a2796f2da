import type { ValidateFunction } from 'ajv';
import { HostBudget } from './host-budget.js';
import type { HostStats, ModulePolicy } from './protocol.js';
import { SensorAccess } from './sensor-access.js';
import {
  EdgeError,
  LOG_LEVELS,
  LOG_MAX_BYTES,
  SENSOR_PATH_MAX_BYTES,
  SENSOR_READ_MAX_BYTES,
  UPLINK_MAX_BYTES,
  type LogLevel,
} from './wasm-abi.js';

export interface HostSinks {
  log(level: LogLevel, text: string): void;
  uplink(payload: string): void;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
/** WASI preview1 errno values, and the most iovecs one write may pass (POSIX's IOV_MAX). */
const WASI_EAGAIN = 6;
const WASI_EINVAL = 28;
const WASI_IOV_MAX = 1024;

/**
 * The `env` imports of one module. Every argument comes from the guest: each is checked to be
 * an integer, and every pointer and length to lie inside the module's memory, before use.
 */
export class HostFunctions {
  readonly stats: HostStats = { hostCalls: 0, refusedCalls: 0, refusedBytes: 0 };
  #memory: WebAssembly.Memory | undefined;
  readonly #calls: HostBudget;
  readonly #bytes: HostBudget;
  readonly #sensors: SensorAccess;

  constructor(
    private readonly policy: ModulePolicy,
    private readonly sinks: HostSinks,
    private readonly validateUplink: ValidateFunction | undefined,
  ) {
    this.#calls = new HostBudget(policy.hostCallsPerSecond);
    this.#bytes = new HostBudget(policy.ioBytesPerSecond);
    this.#sensors = new SensorAccess(policy.sensorRoot, policy.sensors, policy.deviceSensors);
  }

  /** Set once the instance exists (imports are made before it). */
  bindMemory(memory: WebAssembly.Memory): void {
    this.#memory = memory;
  }

  /** Takes and resets the counters for the next report. */
  takeStats(): HostStats {
    const taken = { ...this.stats };
    this.stats.hostCalls = this.stats.refusedCalls = this.stats.refusedBytes = 0;
    return taken;
  }

  imports(): Record<string, (...args: unknown[]) => number> {
    return {
      edge_log: (level, ptr, len) => this.#edgeLog(level, ptr, len),
      get_sensor: (pathPtr, pathLen, outPtr, outCap) =>
        this.#getSensor(pathPtr, pathLen, outPtr, outCap),
      post_uplink: (ptr, len) => this.#postUplink(ptr, len),
    };
  }

  /**
   * WASI's imports with its writes (fd_write, fd_pwrite) charged to the same quotas as host
   * functions: stdout and the in-memory files live in this process, outside the memory quota.
   */
  chargeWasiWrites(wasiImports: WebAssembly.ModuleImports): WebAssembly.ModuleImports {
    const charged = { ...wasiImports };
    for (const name of ['fd_write', 'fd_pwrite']) {
      const write = wasiImports[name];
      if (typeof write !== 'function') continue;
      charged[name] = (fd: unknown, iovs: unknown, iovsLen: unknown, ...rest: unknown[]) => {
        const errno = this.#chargeWrite(iovs, iovsLen);
        return errno === 0
          ? (write as (...args: unknown[]) => unknown)(fd, iovs, iovsLen, ...rest)
          : errno;
      };
    }
    return charged;
  }

  /** 0 when the write's bytes (the sum of its iovecs) fit the quotas, else a WASI errno. */
  #chargeWrite(iovs: unknown, iovsLen: unknown): number {
    if (!this.#enter()) return WASI_EAGAIN;
    if (!isI32(iovsLen) || iovsLen < 0 || iovsLen > WASI_IOV_MAX) return WASI_EINVAL;
    const vectors = this.#view(iovs, iovsLen * 8);
    if (!vectors) return WASI_EINVAL;
    const fields = new DataView(vectors.buffer, vectors.byteOffset, vectors.byteLength);
    let total = 0;
    for (let at = 4; at < fields.byteLength; at += 8) total += fields.getUint32(at, true);
    return this.#takeBytes(total) ? 0 : WASI_EAGAIN;
  }

  /** The guest's bytes at [ptr, ptr+len), or undefined when any part is outside its memory. */
  #view(ptr: unknown, len: unknown): Uint8Array | undefined {
    if (!this.#memory || !isI32(ptr) || !isI32(len) || ptr < 0 || len < 0) return undefined;
    const size = this.#memory.buffer.byteLength;
    if (ptr > size || len > size - ptr) return undefined;
    return new Uint8Array(this.#memory.buffer, ptr, len);
  }

  /** Counts the call; false (EQUOTA) when the module is over its host-call rate. */
  #enter(): boolean {
    this.stats.hostCalls++;
    if (this.#calls.tryTake(1)) return true;
    this.stats.refusedCalls++;
    return false;
  }

  #takeBytes(count: number): boolean {
    if (this.#bytes.tryTake(count)) return true;
    this.stats.refusedBytes++;
    return false;
  }

  #edgeLog(level: unknown, ptr: unknown, len: unknown): number {
    if (!this.#enter()) return EdgeError.EQUOTA;
    if (!this.policy.log) return EdgeError.EDENIED;
    if (!isI32(level) || level < 0 || level >= LOG_LEVELS.length) return EdgeError.EINVAL;
    const bytes = this.#view(ptr, len);
    if (!bytes) return EdgeError.EINVAL;
    if (bytes.length > LOG_MAX_BYTES) return EdgeError.ETOOBIG;
    if (!this.#takeBytes(bytes.length)) return EdgeError.EQUOTA;
    const text = decodeUtf8(bytes);
    if (text === undefined) return EdgeError.EUTF8;
    this.sinks.log(LOG_LEVELS[level]!, text);
    return 0;
  }

  #getSensor(pathPtr: unknown, pathLen: unknown, outPtr: unknown, outCap: unknown): number {
    if (!this.#enter()) return EdgeError.EQUOTA;
    if (this.policy.sensors.length === 0) return EdgeError.EDENIED;
    const pathBytes = this.#view(pathPtr, pathLen);
    if (!pathBytes || !isI32(outCap) || outCap < 0) return EdgeError.EINVAL;
    const out = this.#view(outPtr, Math.min(outCap, SENSOR_READ_MAX_BYTES));
    if (!out) return EdgeError.EINVAL;
    if (pathBytes.length > SENSOR_PATH_MAX_BYTES) return EdgeError.ETOOBIG;
    const path = decodeUtf8(pathBytes);
    if (path === undefined) return EdgeError.EUTF8;
    if (!this.#takeBytes(out.length)) return EdgeError.EQUOTA;
    return this.#sensors.read(path, out);
  }

  #postUplink(ptr: unknown, len: unknown): number {
    if (!this.#enter()) return EdgeError.EQUOTA;
    if (!this.validateUplink) return EdgeError.EDENIED;
    if (!this.policy.uplinkConfigured) return EdgeError.EIO;
    const bytes = this.#view(ptr, len);
    if (!bytes) return EdgeError.EINVAL;
    if (bytes.length > UPLINK_MAX_BYTES) return EdgeError.ETOOBIG;
    if (!this.#takeBytes(bytes.length)) return EdgeError.EQUOTA;
    const text = decodeUtf8(bytes);
    if (text === undefined) return EdgeError.EUTF8;
    let payload: unknown;
    try {
      payload = JSON.parse(text);
    } catch {
      return EdgeError.ESCHEMA;
    }
    if (!this.validateUplink(payload)) return EdgeError.ESCHEMA;
    this.sinks.uplink(text);
    return 0;
  }
}

/** The bytes as text, or undefined when they are not valid UTF-8. */
function decodeUtf8(bytes: Uint8Array): string | undefined {
  try {
    return utf8.decode(bytes);
  } catch {
    return undefined;
  }
}

function isI32(value: unknown): value is number {
  return (
    typeof value === 'number' && Number.isInteger(value) && value >= -(2 ** 31) && value < 2 ** 31
  );
}
