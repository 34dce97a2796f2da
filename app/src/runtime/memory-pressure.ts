import { EventEmitter } from 'node:events';
import { getHeapStatistics } from 'node:v8';
import type { MemoryReading, MemoryReadingSource } from './memory-sources.js';

/** Thresholds in percent: pressure starts at or above `enter`, ends only below `exit`. */
export interface PressureThresholds {
  /** Memory in use against the limit (cgroup's or machine's). */
  usedEnterPercent: number;
  usedExitPercent: number;
  /** PSI some avg10, where the kernel reports it. */
  stallEnterPercent: number;
  stallExitPercent: number;
  /** V8 heap in use against its ceiling: near it, the process itself is about to die. */
  heapEnterPercent: number;
  heapExitPercent: number;
}

export type PressureLevel = 'normal' | 'high';

/** One look at memory, with every figure the decision used. */
export interface PressureSample extends MemoryReading {
  usedPercent: number;
  heapPercent: number;
  level: PressureLevel;
  /** Which figures are over their threshold (entering) or still over their exit (staying). */
  causes: string[];
}

export interface PressureChange {
  level: PressureLevel;
  sample: PressureSample;
}

/**
 * "Is memory short?" for the whole server: shedding, the module sandbox and caches ask
 * `isHigh()` or listen for 'change' ({ level, sample }), emitted once per transition.
 */
export interface MemoryPressure {
  isHigh(): boolean;
  readonly level: PressureLevel;
  readonly lastSample: PressureSample | undefined;
  /** A reading now, rather than at the next poll. */
  check(): Promise<PressureSample>;
  on(event: 'change', listener: (change: PressureChange) => void): this;
  off(event: 'change', listener: (change: PressureChange) => void): this;
}

export interface HeapUse {
  usedBytes: number;
  limitBytes: number;
}

const v8HeapUse = (): HeapUse => {
  const stats = getHeapStatistics();
  return { usedBytes: stats.used_heap_size, limitBytes: stats.heap_size_limit };
};

/** Polls a memory source and turns its readings into a level with hysteresis. */
export class MemoryPressureMonitor extends EventEmitter implements MemoryPressure {
  readonly #source: MemoryReadingSource;
  readonly #thresholds: PressureThresholds;
  readonly #heapUse: () => HeapUse;
  #level: PressureLevel = 'normal';
  #lastSample: PressureSample | undefined;
  #timer: NodeJS.Timeout | undefined;
  #checking: Promise<PressureSample> | undefined;

  constructor(
    source: MemoryReadingSource,
    thresholds: PressureThresholds,
    heapUse: () => HeapUse = v8HeapUse,
  ) {
    super();
    if (
      thresholds.usedExitPercent > thresholds.usedEnterPercent ||
      thresholds.stallExitPercent > thresholds.stallEnterPercent ||
      thresholds.heapExitPercent > thresholds.heapEnterPercent
    ) {
      throw new RangeError('a pressure exit threshold must not exceed its enter threshold');
    }
    this.#source = source;
    this.#thresholds = thresholds;
    this.#heapUse = heapUse;
  }

  get level(): PressureLevel {
    return this.#level;
  }

  get lastSample(): PressureSample | undefined {
    return this.#lastSample;
  }

  isHigh(): boolean {
    return this.#level === 'high';
  }

  /** Checks every intervalMs; the timer does not keep the process alive. */
  start(intervalMs: number, onError: (error: unknown) => void): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => void this.check().catch(onError), intervalMs).unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** One reading and decision; concurrent calls share it. */
  check(): Promise<PressureSample> {
    this.#checking ??= this.#check().finally(() => (this.#checking = undefined));
    return this.#checking;
  }

  async #check(): Promise<PressureSample> {
    const reading = await this.#source.read();
    const heap = this.#heapUse();
    const usedPercent = (100 * reading.usedBytes) / reading.limitBytes;
    const heapPercent = (100 * heap.usedBytes) / heap.limitBytes;
    const t = this.#thresholds;
    // Entering looks at the enter thresholds; once high, any figure above its exit keeps it high.
    const high = this.#level === 'high';
    const causes: string[] = [];
    if (usedPercent >= (high ? t.usedExitPercent : t.usedEnterPercent))
      causes.push(`memory ${usedPercent.toFixed(1)}% used (${reading.source})`);
    if (
      reading.stallPercent !== undefined &&
      reading.stallPercent >= (high ? t.stallExitPercent : t.stallEnterPercent)
    )
      causes.push(`PSI some avg10 ${reading.stallPercent}%`);
    if (heapPercent >= (high ? t.heapExitPercent : t.heapEnterPercent))
      causes.push(`V8 heap ${heapPercent.toFixed(1)}% of its ceiling`);
    const level: PressureLevel = causes.length ? 'high' : 'normal';
    const sample: PressureSample = { ...reading, usedPercent, heapPercent, level, causes };
    this.#lastSample = sample;
    if (level !== this.#level) {
      this.#level = level;
      this.emit('change', { level, sample } satisfies PressureChange);
    }
    return sample;
  }
}
