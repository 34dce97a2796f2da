import { spawn as ptySpawn, type IPty } from 'node-pty';
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConsoleShell, ConsoleText } from './serial-console.js';

/** Stock U-Boot for the QEMU virt board, from Debian's u-boot-qemu. */
export const QEMU_UBOOT = '/usr/lib/u-boot/qemu_arm64/u-boot.bin';

export interface QemuDeviceOptions {
  disk: string;
  /** Memory in MiB; a Pi 4 has 1 GiB and more. */
  memoryMiB?: number;
  /** Host port forwarded to the edge server's port 8080. */
  hostPort?: number;
  /** Where the board's real-time clock starts (QEMU's -rtc base=, e.g. 2001-01-01); else now. */
  rtcBase?: string;
  /** Called with every chunk the serial console prints, ANSI codes removed. */
  onConsole?: (text: string) => void;
  /**
   * For benchmarks: the guest's clock counts executed instructions (QEMU's -icount, 1 ns
   * each), so a CPU time read inside the guest is an instruction count, whatever the host.
   */
  instructionClock?: boolean;
}

/**
 * The QEMU virt board booting a disk image with the stock U-Boot, its serial console on a
 * pseudo-terminal and the edge server's port forwarded to 127.0.0.1.
 */
export class QemuDevice {
  readonly hostPort: number;
  #pty: IPty | undefined;
  #exited: Promise<number> | undefined;
  /** QEMU's human monitor, on a socket: the test's hand on the network cable. */
  readonly #monitorDir = mkdtempSync(join(tmpdir(), 'edge-qemu-monitor-'));

  readonly #console: ConsoleText;
  readonly #shell: ConsoleShell;

  private constructor(
    private readonly options: QemuDeviceOptions,
    hostPort: number,
  ) {
    this.hostPort = hostPort;
    this.#console = new ConsoleText(options.onConsole);
    this.#shell = new ConsoleShell(this.#console, (data) => this.#pty?.write(data));
  }

  static async start(options: QemuDeviceOptions): Promise<QemuDevice> {
    const device = new QemuDevice(options, options.hostPort ?? (await freePort()));
    device.#boot();
    return device;
  }

  get baseUrl(): string {
    return `http://127.0.0.1:${this.hostPort}`;
  }

  /** Everything the console printed since start. */
  get console(): string {
    return this.#console.text;
  }

  #boot(): void {
    const args = [
      '-M',
      'virt',
      '-cpu',
      'cortex-a72',
      '-m',
      String(this.options.memoryMiB ?? 512),
      '-display',
      'none',
      '-monitor',
      `unix:${join(this.#monitorDir, 'monitor.sock')},server=on,wait=off`,
      '-serial',
      'stdio',
      '-bios',
      QEMU_UBOOT,
      '-drive',
      `if=none,file=${this.options.disk},format=raw,id=disk0,cache=writeback`,
      '-device',
      'virtio-blk-device,drive=disk0',
      '-netdev',
      `user,id=net0,hostfwd=tcp:127.0.0.1:${this.hostPort}-:8080`,
      '-device',
      'virtio-net-device,netdev=net0',
      ...(this.options.rtcBase ? ['-rtc', `base=${this.options.rtcBase}`] : []),
      ...(this.options.instructionClock ? ['-icount', 'shift=0,sleep=on'] : []),
    ];
    const pty = ptySpawn('qemu-system-aarch64', args, { cols: 200, rows: 50, env: process.env });
    this.#pty = pty;
    this.#exited = new Promise((resolve) => pty.onExit(({ exitCode }) => resolve(exitCode)));
    pty.onData((data) => this.#console.append(data));
  }

  /** Waits until the console prints a match, searching from `from` (an index into console). */
  waitForConsole(pattern: RegExp, timeoutMs: number, from = 0): Promise<RegExpExecArray> {
    return this.#console.waitFor(pattern, timeoutMs, from);
  }

  /** Types a line on the serial console. */
  type(line: string): void {
    this.#shell.type(line);
  }

  /** Runs a shell command on the console (opened once with `openShell`); returns its output. */
  run(command: string, timeoutMs = 20_000): Promise<string> {
    return this.#shell.run(command, timeoutMs);
  }

  /** Activates the console shell that busybox init offers ("Please press Enter"). */
  openShell(timeoutMs = 60_000): Promise<void> {
    return this.#shell.open(timeoutMs);
  }

  /** Polls an HTTP path on the device until `accept` says yes. */
  async waitForHttp(
    path: string,
    timeoutMs: number,
    accept: (response: Response) => boolean = (response) => response.ok,
  ): Promise<Response> {
    const deadline = Date.now() + timeoutMs;
    let last = 'no answer';
    while (Date.now() < deadline) {
      try {
        const response = await fetch(this.baseUrl + path, { signal: AbortSignal.timeout(2000) });
        if (accept(response)) return response;
        last = `HTTP ${response.status}: ${await response.text()}`;
      } catch (error) {
        last = (error as Error).message;
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    throw new Error(
      `${path} not ready within ${timeoutMs} ms (${last}); console:\n${this.console.slice(-1500)}`,
    );
  }

  /** Plugs the network cable in or out (QEMU's `set_link`): connections stall, as on a dead link. */
  async setLink(up: boolean): Promise<void> {
    const socket = createConnection(join(this.#monitorDir, 'monitor.sock'));
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.end(`set_link net0 ${up ? 'on' : 'off'}\n`, () => resolve());
      });
    });
  }

  /** Cuts the power: QEMU is killed on the spot. */
  async powerCut(): Promise<void> {
    this.#pty?.kill('SIGKILL');
    await this.#exited;
  }

  /** Powers off through the guest when possible, else cuts the power. */
  async stop(): Promise<void> {
    if (!this.#pty) return;
    this.#pty.kill('SIGTERM');
    const exited = await Promise.race([
      this.#exited,
      new Promise((resolve) => setTimeout(() => resolve('timeout'), 5000)),
    ]);
    if (exited === 'timeout') await this.powerCut();
    this.#pty = undefined;
    rmSync(this.#monitorDir, { recursive: true, force: true });
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}
