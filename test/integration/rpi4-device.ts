import { spawn as ptySpawn, type IPty } from 'node-pty';
import { randomBytes } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { readBootFile } from './disk-image.js';

export interface Rpi4DeviceOptions {
  /** A test copy of the Pi 4 SD card (see rpi4-images.ts): its own U-Boot and DTB boot it. */
  disk: string;
  /** A folder for the U-Boot binary, the DTB and the sockets. */
  dir: string;
  /** Called with every chunk either UART prints, ANSI codes removed. */
  onConsole?: (text: string) => void;
}

// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\r/g;

/**
 * QEMU's raspi4b booting a Pi 4 SD card with the card's own U-Boot (as the Pi firmware would
 * start it: u-boot.bin and bcm2711-rpi-4-b.dtb from p1). Two UARTs: U-Boot's console is the
 * mini UART (a pseudo-terminal here), Linux's the PL011 (a socket; the test-only edge-test.scr
 * points the kernel there). `console` is both, in the order they printed.
 */
export class Rpi4Device {
  readonly startedAt = performance.now();
  #pty: IPty | undefined;
  #linux: Socket | undefined;
  #console = '';
  #exited: Promise<number> | undefined;
  #waiters = new Set<() => void>();
  #qmp: string;

  private constructor(private readonly options: Rpi4DeviceOptions) {
    this.#qmp = join(options.dir, 'qmp.sock');
  }

  static async start(options: Rpi4DeviceOptions): Promise<Rpi4Device> {
    const device = new Rpi4Device(options);
    await device.#boot();
    return device;
  }

  get console(): string {
    return this.#console;
  }

  #print(data: string): void {
    const text = data.replace(ANSI, '');
    this.#console += text;
    this.options.onConsole?.(text);
    for (const wake of this.#waiters) wake();
  }

  async #boot(): Promise<void> {
    const { dir, disk } = this.options;
    writeFileSync(join(dir, 'u-boot.bin'), readBootFile(disk, 'u-boot.bin'));
    writeFileSync(join(dir, 'bcm2711-rpi-4-b.dtb'), readBootFile(disk, 'bcm2711-rpi-4-b.dtb'));
    const uart0 = join(dir, 'uart0.sock');
    const args = [
      '-M',
      'raspi4b',
      '-kernel',
      join(dir, 'u-boot.bin'),
      '-dtb',
      join(dir, 'bcm2711-rpi-4-b.dtb'),
      '-drive',
      `file=${disk},if=sd,format=raw,cache=writeback`,
      '-serial',
      `unix:${uart0},server=on,wait=off`,
      // signal=off: noise on U-Boot's UART may hold Ctrl-C, which would otherwise stop QEMU.
      '-chardev',
      'stdio,id=uboot,signal=off',
      '-serial',
      'chardev:uboot',
      '-qmp',
      `unix:${this.#qmp},server=on,wait=off`,
      '-display',
      'none',
      '-monitor',
      'none',
    ];
    const pty = ptySpawn('qemu-system-aarch64', args, { cols: 200, rows: 50, env: process.env });
    this.#pty = pty;
    this.#exited = new Promise((resolve) => pty.onExit(({ exitCode }) => resolve(exitCode)));
    pty.onData((data) => this.#print(data));
    this.#linux = await connectWhenListening(uart0, this.#exited);
    this.#linux.setEncoding('utf8');
    this.#linux.on('data', (data: string) => this.#print(data));
  }

  /** Waits until the console prints a match, searching from `from` (an index into console). */
  async waitForConsole(pattern: RegExp, timeoutMs: number, from = 0): Promise<RegExpExecArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const match = pattern.exec(this.#console.slice(from));
      if (match) return match;
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(
          `console did not print ${pattern} within ${timeoutMs} ms; last lines:\n${this.#console.slice(-2000)}`,
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

  /** Types a line on Linux's console. */
  type(line: string): void {
    this.#linux?.write(`${line}\r`);
  }

  /** Sends random bytes to U-Boot's UART (the mini UART), as a noisy line would. */
  sendNoise(bytes: number): void {
    // No Ctrl-C (U-Boot's interrupt key): noise that aborts a command is another test.
    const noise = [...randomBytes(bytes)].map((byte) => (byte === 3 ? 0x55 : byte));
    this.#pty?.write(Buffer.from(noise).toString('latin1'));
  }

  /** Runs a shell command on Linux's console and returns what it printed (needs openShell). */
  async run(command: string, timeoutMs = 30_000): Promise<string> {
    // The markers as printed differ from the markers as typed, so the echo never matches.
    const tag = Math.random().toString(36).slice(2);
    const from = this.#console.length;
    this.type(`echo __edge_begin_$((6*7))_${tag}; ${command}; echo __edge_end_$?_${tag}`);
    const end = await this.waitForConsole(new RegExp(`__edge_end_(\\d+)_${tag}`), timeoutMs, from);
    const printed = this.#console.slice(from);
    const begin = `__edge_begin_42_${tag}\n`;
    const output = printed.slice(printed.indexOf(begin) + begin.length, printed.indexOf(end[0]));
    if (end[1] !== '0') throw new Error(`'${command}' exited with ${end[1]}: ${output}`);
    return output;
  }

  /** Activates the console shell that busybox init offers, searching from `from`. */
  async openShell(timeoutMs: number, from = 0): Promise<void> {
    await this.waitForConsole(/Please press Enter to activate this console/, timeoutMs, from);
    this.type('');
    await this.run('true', timeoutMs);
  }

  /** GETs a path of the edge server from the device itself (busybox wget), until it answers 2xx. */
  async httpGetOnDevice(path: string, timeoutMs: number): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      try {
        return await this.run(`wget -q -T 5 -O - http://127.0.0.1:8080${path}`, 30_000);
      } catch (error) {
        last = (error as Error).message;
      }
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    throw new Error(`${path} did not answer within ${timeoutMs} ms: ${last}`);
  }

  /** Bytes QEMU has read from the SD card image since start (QMP query-blockstats). */
  async sdBytesRead(): Promise<number> {
    const replies = await qmp(this.#qmp, ['query-blockstats']);
    const stats = replies[0] as { stats: { rd_bytes: number } }[];
    return stats.reduce((sum, device) => sum + device.stats.rd_bytes, 0);
  }

  /** Seconds since QEMU was started. */
  get uptimeSeconds(): number {
    return (performance.now() - this.startedAt) / 1000;
  }

  /** Cuts the power: QEMU is killed on the spot. */
  async powerCut(): Promise<void> {
    this.#linux?.destroy();
    this.#pty?.kill('SIGKILL');
    await this.#exited;
    this.#pty = undefined;
  }

  /** Stops QEMU (SIGTERM, then SIGKILL); the tests sync the card before. */
  async stop(): Promise<void> {
    if (!this.#pty) return;
    this.#linux?.destroy();
    this.#pty.kill('SIGTERM');
    const exited = await Promise.race([
      this.#exited,
      new Promise((resolve) => setTimeout(() => resolve('timeout'), 5000)),
    ]);
    if (exited === 'timeout') await this.powerCut();
    this.#pty = undefined;
  }
}

async function connectWhenListening(path: string, exited: Promise<number>): Promise<Socket> {
  let gone = false;
  void exited.then(() => (gone = true));
  for (let tries = 0; tries < 200 && !gone; tries++) {
    if (existsSync(path)) {
      try {
        return await new Promise<Socket>((resolve, reject) => {
          const socket = connect(path, () => resolve(socket));
          socket.once('error', reject);
        });
      } catch {
        // QEMU made the socket but does not listen yet.
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`QEMU ${gone ? 'exited' : 'did not open'} ${path}`);
}

/** Runs QMP commands and returns their results. */
async function qmp(path: string, commands: string[]): Promise<unknown[]> {
  const socket = connect(path);
  socket.setEncoding('utf8');
  let buffer = '';
  const lines: unknown[] = [];
  let wake = () => {};
  socket.on('data', (data: string) => {
    buffer += data;
    let newline;
    while ((newline = buffer.indexOf('\n')) >= 0) {
      const line = JSON.parse(buffer.slice(0, newline)) as Record<string, unknown>;
      buffer = buffer.slice(newline + 1);
      if ('return' in line || 'error' in line || 'QMP' in line) lines.push(line);
      wake();
    }
  });
  const next = async (): Promise<Record<string, unknown>> => {
    while (lines.length === 0) await new Promise<void>((resolve) => (wake = resolve));
    return lines.shift() as Record<string, unknown>;
  };
  try {
    await next(); // greeting
    socket.write('{"execute":"qmp_capabilities"}\n');
    await next();
    const results: unknown[] = [];
    for (const command of commands) {
      socket.write(`${JSON.stringify({ execute: command })}\n`);
      const reply = await next();
      if ('error' in reply) throw new Error(`QMP ${command}: ${JSON.stringify(reply.error)}`);
      results.push(reply.return);
    }
    return results;
  } finally {
    socket.destroy();
  }
}
