import type { Counter } from 'prom-client';
import { HostBudget } from './host-budget.js';
import type { SandboxLog } from './module-instance.js';
import type { LogLevel } from './wasm-abi.js';

/** How long drops are counted before one line reports them. */
const EPISODE_MS = 1000;

/**
 * The device's budget of module log lines (edge_log, WASI output, undelivered uplinks): a token
 * bucket shared by all modules, because every line is written synchronously on the main thread.
 * Lines over it are dropped and counted; each module's drops, and its uplinks dropped for a full
 * queue, are then reported in one line per second while they go on, not one line per drop.
 */
export class ModuleLogBudget {
  readonly #lines: HostBudget;
  readonly #dropped = new Map<string, { lines: number; uplinks: number }>();
  #timer: NodeJS.Timeout | undefined;

  constructor(
    linesPerSecond: number,
    private readonly log: SandboxLog,
    private readonly droppedLines: Counter<'module'>,
    now?: () => number,
  ) {
    this.#lines = new HostBudget(linesPerSecond, now);
  }

  /** Logs the line for `module`, or counts it dropped when the device is over its budget. */
  write(module: string, level: LogLevel, object: object, message: string): void {
    if (this.#lines.tryTake(1)) {
      this.log[level]({ ...object, module }, message);
      return;
    }
    this.droppedLines.inc({ module });
    this.#episode(module).lines++;
  }

  /** An uplink dropped for a full queue: reported with the episode, not one line each. */
  uplinkDropped(module: string): void {
    this.#episode(module).uplinks++;
  }

  /** Reports the drops counted so far (at the end of an episode, and at close). */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const [module, { lines, uplinks }] of this.#dropped) {
      if (lines) {
        this.log.warn(
          { module, dropped: lines },
          `module ${module}: ${lines} log lines dropped in the last second (modules.maxLogLinesPerSecond)`,
        );
      }
      if (uplinks) {
        this.log.warn(
          { module, dropped: uplinks },
          `module ${module}: ${uplinks} uplinks dropped in the last second (the send queue was full)`,
        );
      }
    }
    this.#dropped.clear();
  }

  #episode(module: string): { lines: number; uplinks: number } {
    this.#timer ??= setTimeout(() => this.flush(), EPISODE_MS).unref();
    let counts = this.#dropped.get(module);
    if (!counts) this.#dropped.set(module, (counts = { lines: 0, uplinks: 0 }));
    return counts;
  }
}
