import type { LogLevel } from './wasm-abi.js';

/** Messages between the server and a module's worker (module-instance.ts and module-worker.ts). */

/** What a module may do: its capabilities within the device's, and its I/O quotas. */
export interface ModulePolicy {
  log: boolean;
  sensors: string[];
  deviceSensors: string[];
  sensorRoot: string;
  uplinkSchema: Record<string, unknown> | undefined;
  /** False when the device has no update server to send uplinks to. */
  uplinkConfigured: boolean;
  hostCallsPerSecond: number;
  ioBytesPerSecond: number;
}

export interface WorkerInit {
  name: string;
  module: WebAssembly.Module;
  wasi: boolean;
  /** The @wasmer/wasi library as a script, for WASI modules only. */
  wasiSource: string | undefined;
  /** The most the library's in-memory file system may take (quotas.memoryBytes). */
  wasiFsMaxBytes: number;
  policy: ModulePolicy;
}

export type CallInput =
  { kind: 'args'; args: Array<number | string> } | { kind: 'bytes'; bytes: Uint8Array };

export type ToWorker = { type: 'call'; id: number; exportName: string; input: CallInput };

/** Host-function counters since the last report: sent with every answer. */
export interface HostStats {
  hostCalls: number;
  refusedCalls: number;
  refusedBytes: number;
}

export type CallOutcome =
  | { ok: true; value: number | string | null }
  | { ok: false; kind: 'trap' | 'bad-call'; message: string };

export type FromWorker =
  | {
      type: 'ready';
      memoryBytes: number;
      stats: HostStats;
      /** The worker's kernel thread id when its CPU time can be read (thread-cpu.ts), else undefined. */
      tid: number | undefined;
      /** The thread's CPU time so far (ms), when `tid` is known: the watchdog counts from it. */
      threadCpuMs: number | undefined;
    }
  | { type: 'start-failed'; message: string }
  /** The worker must end (its WASI file system went over its quota): the server terminates it. */
  | { type: 'stopped'; message: string }
  | {
      type: 'result';
      id: number;
      outcome: CallOutcome;
      /** CPU time of the worker's thread during the call (wall time where /proc cannot tell). */
      cpuMs: number;
      /** The thread's CPU time at the end of the call (ms), when its thread id is known. */
      threadCpuMs: number | undefined;
      memoryBytes: number;
      stats: HostStats;
    }
  | { type: 'log'; level: LogLevel; text: string }
  | { type: 'uplink'; payload: string };
