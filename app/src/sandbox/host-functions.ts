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
    let text: string;
    try {
      text = utf8.decode(bytes);
    } catch {
      return EdgeError.EUTF8;
    }
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
    let path: string;
    try {
      path = utf8.decode(pathBytes);
    } catch {
      return EdgeError.EUTF8;
    }
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
    let text: string;
    try {
      text = utf8.decode(bytes);
    } catch {
      return EdgeError.EUTF8;
    }
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

function isI32(value: unknown): value is number {
  return (
    typeof value === 'number' && Number.isInteger(value) && value >= -(2 ** 31) && value < 2 ** 31
  );
}
