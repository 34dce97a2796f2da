import { spawn as ptySpawn, type IPty } from 'node-pty';
import { randomBytes } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { readBootFile } from './disk-image.js';
import { ConsoleShell, ConsoleText } from './serial-console.js';

export interface Rpi4DeviceOptions {
  /** A test copy of the Pi 4 SD card (see rpi4-images.ts): its own U-Boot and DTB boot it. */
  disk: string;
  /** A folder for the U-Boot binary, the DTB and the sockets. */
  dir: string;
  /** Called with every chunk either UART prints, ANSI codes removed. */
  onConsole?: (text: string) => void;
  /** The host port forwarded to the edge server's port 8080, when the test talks to it. */
  hostPort?: number;
}

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
  #exited: Promise<number> | undefined;

  readonly #console: ConsoleText;
  /** Linux's console (the PL011), where busybox offers a shell. */
  readonly shell: ConsoleShell;

  private constructor(private readonly options: Rpi4DeviceOptions) {
    this.#console = new ConsoleText(options.onConsole);
    this.shell = new ConsoleShell(this.#console, (data) => this.#linux?.write(data));
  }

  static async start(options: Rpi4DeviceOptions): Promise<Rpi4Device> {
    const device = new Rpi4Device(options);
    await device.#boot();
    return device;
  }

  get console(): string {
    return this.#console.text;
  }

  /** The edge server's URL through the forwarded port (needs `hostPort`). */
  get baseUrl(): string {
    if (!this.options.hostPort) throw new Error('this device was started without a hostPort');
    return `http://127.0.0.1:${this.options.hostPort}`;
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
      // The network: a USB Ethernet adapter on the DWC2 port (the device reaches the host at
      // 10.0.2.2, QEMU's user-mode network).
      '-netdev',
      `user,id=net0${this.options.hostPort ? `,hostfwd=tcp:127.0.0.1:${this.options.hostPort}-:8080` : ''}`,
      '-device',
      'usb-net,netdev=net0',
      '-display',
      'none',
      '-monitor',
      'none',
    ];
    const pty = ptySpawn('qemu-system-aarch64', args, { cols: 200, rows: 50, env: process.env });
    this.#pty = pty;
    this.#exited = new Promise((resolve) => pty.onExit(({ exitCode }) => resolve(exitCode)));
    pty.onData((data) => this.#console.append(data));
    this.#linux = await connectWhenListening(uart0, this.#exited);
    this.#linux.setEncoding('utf8');
    this.#linux.on('data', (data: string) => this.#console.append(data));
  }

  /** Waits until a console prints a match, searching from `from` (an index into console). */
  waitForConsole(pattern: RegExp, timeoutMs: number, from = 0): Promise<RegExpExecArray> {
    return this.#console.waitFor(pattern, timeoutMs, from);
  }

  /** Sends random bytes to U-Boot's UART (the mini UART), as a noisy line would. */
  sendNoise(bytes: number): void {
    // No Ctrl-C (U-Boot's interrupt key): noise that aborts a command is another test.
    const noise = [...randomBytes(bytes)].map((byte) => (byte === 3 ? 0x55 : byte));
    this.#pty?.write(Buffer.from(noise).toString('latin1'));
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
