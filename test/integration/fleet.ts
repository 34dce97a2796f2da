import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { copyDisk } from './disk-image.js';
import { writeDataFiles } from './images.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const OTA_SERVER = join(ROOT, 'ota-server', 'bin', 'ota-server.js');
export const FLEET_BOARD = 'qemu';
/** The update server the fleet's images name; a device on another port is told so on /data. */
export const BAKED_SERVER_PORT = 8443;
/** Where a slot says which release it is (the edge server reads it). */
const RELEASE_FILE = '/etc/edge/release.json';

/** A release built by scripts/build-image.sh, or made from another by editing its slot image. */
export interface ReleaseSpec {
  version: string;
  /** debugfs commands applied to `from`'s slot image; `files` are written beside them first. */
  derived?: { from: string; edits: string[]; files?: Record<string, string | Buffer> };
  /** Deltas from these earlier releases (ota-server publish --delta-from). */
  deltaFrom: string[];
  /** The boards it is published for (the same slot image runs on each); the fleet's by default. */
  boards?: string[];
}

export interface Release {
  version: string;
  slotImage: string;
  sha256: string;
  bytes: number;
  /** The QEMU disk with this release in slot A (built releases only). */
  qemuDisk?: string;
  /** The Pi 4 SD card with this release in slot A (built releases only). */
  rpi4Card?: string;
}

/**
 * A fleet on this host: a TUF repository (keys made on first use, kept in `workDir`), the
 * releases built for it with its root baked in, published with deltas, and update servers
 * started on it. Kept between runs; a repository holding older builds starts afresh.
 */
export class Fleet {
  readonly repo: string;
  readonly fleetTokenFile: string;
  readonly operatorTokenFile: string;

  constructor(
    readonly workDir: string,
    private readonly say: (line: string) => void = () => undefined,
  ) {
    this.repo = join(workDir, 'repo');
    mkdirSync(workDir, { recursive: true });
    this.fleetTokenFile = secretFile(join(workDir, 'fleet-token'));
    this.operatorTokenFile = secretFile(join(workDir, 'operator-token'));
  }

  /**
   * Builds what is missing and publishes it, in order; returns the releases by version. With
   * EDGE_FLEET_PREPARED (scripts/qemu-test.sh did it once), only reads what is there.
   */
  prepare(specs: ReleaseSpec[], retried = false): Record<string, Release> {
    const prepared = Boolean(process.env.EDGE_FLEET_PREPARED);
    if (!prepared) {
      if (!existsSync(join(this.repo, 'metadata'))) otaServer('init', '--repo', this.repo);
      otaServer('refresh', '--repo', this.repo);
    }
    const releases: Record<string, Release> = {};
    for (const spec of specs) {
      releases[spec.version] = spec.derived
        ? this.#derive(spec.version, releases[spec.derived.from], spec.derived)
        : this.#build(spec.version);
    }
    const stale = specs.filter((spec) =>
      boardsOf(spec).some((board) => {
        const published = this.publishedSha256(spec.version, board);
        return published !== undefined && published !== releases[spec.version]!.sha256;
      }),
    );
    if (stale.length > 0 && prepared) {
      throw new Error(
        `EDGE_FLEET_PREPARED, but ${stale[0]!.version} is published with other bytes`,
      );
    }
    if (stale.length > 0) {
      // The code changed since the last run: its releases are published with other bytes.
      if (retried) throw new Error(`${stale.map((s) => s.version).join(', ')} stale twice`);
      this.say(`the repository holds older builds of ${stale.map((s) => s.version).join(', ')}`);
      this.say('starting the repository afresh');
      rmSync(this.repo, { recursive: true, force: true });
      rmSync(join(this.workDir, 'images'), { recursive: true, force: true });
      return this.prepare(specs, true);
    }
    for (const spec of specs) {
      for (const board of boardsOf(spec)) {
        if (this.publishedSha256(spec.version, board)) continue;
        this.say(`publishing ${spec.version} for ${board}`);
        otaServer(
          'publish',
          '--repo',
          this.repo,
          '--board',
          board,
          '--version',
          spec.version,
          '--delta-from',
          spec.deltaFrom.join(','),
          releases[spec.version]!.slotImage,
        );
      }
    }
    return releases;
  }

  #build(version: string): Release {
    const out = join(this.workDir, 'images');
    // scripts/qemu-test.sh prepares the fleet once before the scenarios: they only read it.
    if (!process.env.EDGE_FLEET_PREPARED) this.#runImageBuild(version, out);
    const manifest = JSON.parse(readFileSync(join(out, version, 'manifest.json'), 'utf8')) as {
      slotImage: { sha256: string; bytes: number };
    };
    return {
      version,
      slotImage: join(out, version, 'rootfs.ext4'),
      qemuDisk: join(out, version, 'qemu-disk.img'),
      rpi4Card: join(out, version, 'rpi4-sdcard.img'),
      ...manifest.slotImage,
    };
  }

  #runImageBuild(version: string, out: string): void {
    execFileSync(
      join(ROOT, 'scripts', 'build-image.sh'),
      [
        '--version',
        version,
        '--out',
        out,
        '--ota-url',
        `http://10.0.2.2:${BAKED_SERVER_PORT}`,
        '--tuf-root',
        join(this.repo, 'metadata', '1.root.json'),
      ],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    );
  }

  #derive(
    version: string,
    from: Release | undefined,
    { edits, files = {} }: NonNullable<ReleaseSpec['derived']>,
  ): Release {
    if (!from) throw new Error(`${version} is derived from a release listed after it`);
    const dir = join(this.workDir, 'images', version);
    const image = join(dir, 'rootfs.ext4');
    const key = createHash('sha256')
      .update(version)
      .update(from.sha256)
      .update(JSON.stringify(edits));
    for (const [name, content] of Object.entries(files)) key.update(name).update(content);
    const inputs = key.digest('hex');
    const made = join(dir, 'derived.json');
    if (existsSync(made)) {
      const previous = JSON.parse(readFileSync(made, 'utf8')) as { inputs: string; sha256: string };
      if (previous.inputs === inputs) {
        return { version, slotImage: image, sha256: previous.sha256, bytes: from.bytes };
      }
    }
    // Made in a folder of its own, then renamed into place: a scenario never sees half of it.
    const work = mkdtempSync(join(this.workDir, 'images', `.${version}-`));
    try {
      copyDisk(from.slotImage, join(work, 'rootfs.ext4'));
      for (const [name, content] of Object.entries(files)) writeFileSync(join(work, name), content);
      // The release says its own version, as a build would write it: a device running it
      // reports that version, not the one it was derived from.
      const release = JSON.parse(
        execFileSync('debugfs', ['-R', `cat ${RELEASE_FILE}`, from.slotImage], {
          encoding: 'utf8',
          stdio: ['ignore', 'pipe', 'ignore'],
        }),
      ) as Record<string, unknown>;
      writeFileSync(join(work, 'release.json'), JSON.stringify({ ...release, version }));
      const releaseEdits = [`rm ${RELEASE_FILE}`, `write release.json ${RELEASE_FILE}`];
      writeFileSync(join(work, 'edits.debugfs'), `${[...releaseEdits, ...edits].join('\n')}\n`);
      // A fixed time makes the edited image the same bytes at every run, as a build is.
      execFileSync('debugfs', ['-w', '-f', 'edits.debugfs', 'rootfs.ext4'], {
        cwd: work,
        stdio: 'pipe',
        env: { ...process.env, E2FSPROGS_FAKE_TIME: '1704067200' },
      });
      const sha256 = sha256OfFileSync(join(work, 'rootfs.ext4'));
      writeFileSync(join(work, 'derived.json'), JSON.stringify({ inputs, sha256 }));
      rmSync(dir, { recursive: true, force: true });
      renameSync(work, dir);
      return { version, slotImage: image, sha256, bytes: from.bytes };
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }

  /** The SHA-256 of the image published for a version (targets are stored by hash). */
  publishedSha256(version: string, board = FLEET_BOARD): string | undefined {
    const folder = join(this.repo, 'targets', board, version);
    if (!existsSync(folder)) return undefined;
    const image = readdirSync(folder).find((name) => name.endsWith('.rootfs.ext4'));
    return image?.split('.')[0];
  }

  /** An update server on 127.0.0.1:port, with a fresh fleet database. */
  async startServer(
    port: number,
    { repo = this.repo, checkInSeconds = 5 } = {},
  ): Promise<UpdateServer> {
    const data = join(this.workDir, `server-data-${port}`);
    rmSync(data, { recursive: true, force: true });
    const child = spawn(
      process.execPath,
      [
        OTA_SERVER,
        'serve',
        '--repo',
        repo,
        '--host',
        '127.0.0.1',
        '--port',
        String(port),
        '--data',
        data,
        '--fleet-token-file',
        this.fleetTokenFile,
        '--operator-token-file',
        this.operatorTokenFile,
        '--check-in-seconds',
        String(checkInSeconds),
        '--log-level',
        'warn',
      ],
      { stdio: ['ignore', 'inherit', 'inherit'] },
    );
    const server = new UpdateServer(this, child, port, data);
    await server.waitUntilUp();
    return server;
  }

  /**
   * A device disk: `release`'s QEMU disk, its data partition holding the fleet token and the
   * device's own settings (EDGE_* variables; the update server's URL when not the baked one).
   */
  provisionDisk(release: Release, disk: string, options: ProvisionOptions): void {
    if (!release.qemuDisk) throw new Error(`${release.version} has no disk of its own`);
    copyDisk(release.qemuDisk, disk);
    this.provision(disk, options);
  }

  /** Writes the fleet token and the device's settings onto a disk's data partition. */
  provision(disk: string, { serverPort, settings = {}, files = {} }: ProvisionOptions): void {
    const env = { ...settings };
    if (serverPort !== BAKED_SERVER_PORT) env.EDGE_OTA_SERVER_URL = `http://10.0.2.2:${serverPort}`;
    const envText = Object.entries(env)
      .map(([name, value]) => `${name}=${value}\n`)
      .join('');
    // Its scratch files go beside the disk: scenarios provision their disks side by side.
    writeDataFiles(disk, dirname(disk), {
      '/edge/fleet-token': readFileSync(this.fleetTokenFile, 'utf8'),
      ...(envText ? { '/edge/edge-server.env': envText } : {}),
      ...files,
    });
  }
}

export interface ProvisionOptions {
  serverPort: number;
  /** EDGE_* settings of this device, written to /data/edge/edge-server.env. */
  settings?: Record<string, string>;
  /** More files for the data partition, by path inside it. */
  files?: Record<string, string>;
}

export interface DeviceView {
  deviceId: string;
  lastCheckIn: {
    version: string;
    slot: string;
    firmwareHash: string;
    update: { state: string; targetVersion?: string; reason?: string };
  } | null;
}

/** An update server process and what an operator asks of it. */
export class UpdateServer {
  readonly url: string;
  #exitCode: number | null | undefined;

  constructor(
    private readonly fleet: Fleet,
    private readonly child: ChildProcess,
    readonly port: number,
    private readonly dataDir: string,
  ) {
    this.url = `http://127.0.0.1:${port}`;
    child.once('exit', (code) => (this.#exitCode = code));
  }

  async waitUntilUp(): Promise<void> {
    for (let tries = 0; tries < 120; tries++) {
      if (this.#exitCode !== undefined) {
        throw new Error(
          `the update server stopped (exit ${this.#exitCode}); is port ${this.port} free?`,
        );
      }
      if (await getJson(`${this.url}/healthz`)) return;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    throw new Error('the update server did not answer within 30 s');
  }

  /** A roll-out of `version` to `percent` of a board's devices (the fleet's board by default). */
  rollout(version: string, percent = 100, board = FLEET_BOARD): void {
    otaServer(
      'rollout',
      'create',
      '--board',
      board,
      '--version',
      version,
      '--percent',
      String(percent),
      '--server',
      this.url,
      '--operator-token-file',
      this.fleet.operatorTokenFile,
    );
  }

  /** The devices as the operator API shows them. */
  async devices(board = FLEET_BOARD): Promise<DeviceView[]> {
    const token = readFileSync(this.fleet.operatorTokenFile, 'utf8').trim();
    const response = await fetch(`${this.url}/api/v1/devices?board=${board}`, {
      headers: { authorization: `Bearer ${token}` },
    });
    if (!response.ok) throw new Error(`GET /api/v1/devices: HTTP ${response.status}`);
    return ((await response.json()) as { devices: DeviceView[] }).devices;
  }

  /** Polls the operator API until the (one) device's last check-in satisfies `accept`. */
  async waitForDevice(
    accept: (checkIn: NonNullable<DeviceView['lastCheckIn']>) => boolean,
    timeoutMs: number,
    board = FLEET_BOARD,
  ): Promise<NonNullable<DeviceView['lastCheckIn']>> {
    const deadline = Date.now() + timeoutMs;
    let last: DeviceView['lastCheckIn'] | undefined;
    while (Date.now() < deadline) {
      last = (await this.devices(board))[0]?.lastCheckIn;
      if (last && accept(last)) return last;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    throw new Error(`the update server never saw that; last check-in: ${JSON.stringify(last)}`);
  }

  async stop(): Promise<void> {
    if (this.#exitCode !== undefined) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.kill('SIGTERM');
    await exited;
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

function boardsOf(spec: ReleaseSpec): string[] {
  return spec.boards ?? [FLEET_BOARD];
}

function otaServer(...args: string[]): string {
  return execFileSync(process.execPath, [OTA_SERVER, ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
}

function secretFile(path: string): string {
  if (!existsSync(path))
    writeFileSync(path, `${randomBytes(24).toString('hex')}\n`, { mode: 0o600 });
  return path;
}

export async function getJson<T>(url: string): Promise<T | undefined> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(3000) });
    return response.ok ? ((await response.json()) as T) : undefined;
  } catch {
    return undefined;
  }
}

function sha256OfFileSync(path: string): string {
  return execFileSync('sha256sum', [path], { encoding: 'utf8' }).split(' ')[0]!;
}
