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

/** A shell on a serial console: typing lines and reading what the commands print. */
export class ConsoleShell {
  constructor(
    private readonly console: ConsoleText,
    private readonly write: (data: string) => void,
  ) {}

  /** Types a line. */
  type(line: string): void {
    this.write(`${line}\r`);
  }

  /** Runs a command in the shell (activated once with `open`) and returns what it printed. */
  async run(command: string, timeoutMs = 20_000): Promise<string> {
    // The markers as printed differ from the markers as typed ($((...)) and $? expand), so
    // the echo of the typed line, however the console wraps it, never matches them.
    const tag = Math.random().toString(36).slice(2);
    const from = this.console.text.length;
    this.type(`echo __edge_begin_$((6*7))_${tag}; ${command}; echo __edge_end_$?_${tag}`);
    const end = await this.console.waitFor(new RegExp(`__edge_end_(\\d+)_${tag}`), timeoutMs, from);
    const printed = this.console.text.slice(from);
    const begin = `__edge_begin_42_${tag}\n`;
    const output = printed.slice(printed.indexOf(begin) + begin.length, printed.indexOf(end[0]));
    if (end[1] !== '0') throw new Error(`'${command}' exited with ${end[1]}: ${output}`);
    return output;
  }

  /** Activates the console shell that busybox init offers ("Please press Enter"). */
  async open(timeoutMs = 60_000): Promise<void> {
    const prompt = /Please press Enter to activate this console/;
    if (!prompt.test(this.console.text)) await this.console.waitFor(prompt, timeoutMs);
    this.type('');
    await this.run('true', timeoutMs);
  }
}
