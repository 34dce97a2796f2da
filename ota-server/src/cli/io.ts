import type { Readable, Writable } from 'node:stream';

/** Where a command writes, and the environment it reads: tests pass their own. */
export interface CliIo {
  out: Writable;
  err: Writable;
  env: NodeJS.ProcessEnv;
  /** Resolves when the process is asked to stop (serve waits on it). */
  stopSignal?: Promise<string>;
  /** Where a command reads what it asks for (a password); standard input by default. */
  input?: Readable & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown };
}

/** Bad command-line input: printed with the usage hint, exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export function line(stream: Writable, text: string): void {
  stream.write(`${text}\n`);
}

/** Prints progress on long steps: a line each time a step passes another tenth. */
export class ProgressPrinter {
  #lastKey = '';
  #lastTenth = -1;

  constructor(private readonly stream: Writable) {}

  update(label: string, done: number, total: number): void {
    const tenth = total > 0 ? Math.min(10, Math.floor((10 * done) / total)) : 0;
    if (label === this.#lastKey && tenth === this.#lastTenth) return;
    this.#lastKey = label;
    this.#lastTenth = tenth;
    line(this.stream, `${label}: ${tenth * 10}%`);
  }
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}
