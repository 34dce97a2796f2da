// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\r/g;

/** What a device's serial consoles printed (escape codes removed), and waiting for a line. */
export class ConsoleText {
  #text = '';
  #waiters = new Set<() => void>();

  constructor(private readonly onText?: (text: string) => void) {}

  get text(): string {
    return this.#text;
  }

  append(data: string): void {
    const text = data.replace(ANSI, '');
    this.#text += text;
    this.onText?.(text);
    for (const wake of this.#waiters) wake();
  }

  /** Waits until the console prints a match, searching from `from` (an index into text). */
  async waitFor(pattern: RegExp, timeoutMs: number, from = 0): Promise<RegExpExecArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const match = pattern.exec(this.#text.slice(from));
      if (match) return match;
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(
          `console did not print ${pattern} within ${timeoutMs} ms; last lines:\n${this.#text.slice(-2000)}`,
        );
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, Math.min(left, 1000));
        const wake = () => done();
        this.#waiters.add(wake);
        function done() {
          clearTimeout(timer);
          resolve();
        }
      }).finally(() => this.#waiters.clear());
    }
  }
}
