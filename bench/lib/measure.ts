import { execFileSync, spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Linux reports /proc/<pid>/stat times in clock ticks: USER_HZ, 100 on every architecture. */
const CLOCK_TICKS_PER_SECOND = 100;
const GNU_TIME = '/usr/bin/time';

export interface ProcessStats {
  rssBytes: number;
  /** VmHWM: the highest resident set so far. */
  peakRssBytes: number;
  /** User and system CPU time so far. */
  cpuSeconds: number;
}

export interface RunMeasurement extends ProcessStats {
  wallSeconds: number;
  exitCode: number | null;
}

export interface LaunchOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Pins the process to this CPU with taskset, so that it does not fight the load generator. */
  cpu?: number;
  stdio?: StdioOptions;
}

/** What /proc says of a live process: its resident set now and at its peak, its CPU time so far. */
export async function processStats(pid: number): Promise<ProcessStats> {
  const [status, stat] = await Promise.all([
    readFile(`/proc/${pid}/status`, 'utf8'),
    readFile(`/proc/${pid}/stat`, 'utf8'),
  ]);
  const bytes = (key: string): number => {
    const kib = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1];
    if (kib === undefined) throw new Error(`no ${key} in /proc/${pid}/status`);
    return Number(kib) * 1024;
  };
  // The command name may hold spaces: count fields after its closing parenthesis (state is the first).
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return {
    rssBytes: bytes('VmRSS'),
    peakRssBytes: bytes('VmHWM'),
    cpuSeconds: ticks / CLOCK_TICKS_PER_SECOND,
  };
}

/** A child process with a clock started at spawn: for servers that run until stopped. */
export class MeasuredProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly exited: Promise<number | null>;
  readonly #spawnedAt = process.hrtime.bigint();

  constructor(command: string, args: readonly string[], options: LaunchOptions = {}) {
    // taskset execs the command, so the pid is the command's own.
    const [file, argv] =
      options.cpu === undefined
        ? [command, args]
        : ['taskset', ['-c', String(options.cpu), command, ...args]];
    this.child = spawn(file, argv, {
      env: options.env ?? process.env,
      cwd: options.cwd,
      stdio: options.stdio ?? ['ignore', 'ignore', 'inherit'],
    });
    if (this.child.pid === undefined) throw new Error(`cannot spawn ${command}`);
    this.pid = this.child.pid;
    this.exited = new Promise((resolve, reject) => {
      this.child.once('exit', (code, signal) => resolve(code ?? (signal ? null : 0)));
      this.child.once('error', reject);
    });
  }

  secondsSinceSpawn(): number {
    return Number(process.hrtime.bigint() - this.#spawnedAt) / 1e9;
  }

  stats(): Promise<ProcessStats> {
    return processStats(this.pid);
  }

  /** SIGTERM, then SIGKILL if it has not exited within the grace period. */
  async stop(graceMs = 5_000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exited.catch(() => undefined);
    clearTimeout(timer);
  }
}

/** Runs a command to its end: wall time from spawn to exit, and its peak RSS and CPU time. */
export async function measureRun(
  command: string,
  args: readonly string[],
  options: LaunchOptions = {},
): Promise<RunMeasurement> {
  // Only the parent's wait4() sees a finished child's rusage: GNU time is that parent.
  if (!existsSync(GNU_TIME)) {
    throw new Error(`${GNU_TIME} is missing: install the Debian package "time"`);
  }
  const scratch = mkdtempSync(join(tmpdir(), 'bench-time-'));
  const report = join(scratch, 'rusage');
  try {
    const run = new MeasuredProcess(
      GNU_TIME,
      ['-f', '%M %U %S', '-o', report, command, ...args],
      options,
    );
    const exitCode = await run.exited;
    const wallSeconds = run.secondsSinceSpawn();
    // GNU time writes "Command exited with non-zero status N" first when the command failed.
    const lastLine = readFileSync(report, 'utf8').trim().split('\n').at(-1) ?? '';
    const [maxRssKib, user, system] = lastLine.split(' ').map(Number);
    if (maxRssKib === undefined || user === undefined || system === undefined) {
      throw new Error(`cannot read GNU time's report: ${lastLine}`);
    }
    return {
      wallSeconds,
      exitCode,
      rssBytes: maxRssKib * 1024,
      peakRssBytes: maxRssKib * 1024,
      cpuSeconds: user + system,
    };
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

/**
 * Pins this process (all its threads) to one CPU, leaving the others to what it measures;
 * returns how to put the former affinity back.
 */
export function pinSelf(cpu: number): () => void {
  const shown = execFileSync('taskset', ['-p', String(process.pid)], { encoding: 'utf8' });
  const mask = /affinity mask: ([0-9a-f]+)/.exec(shown)?.[1];
  if (mask === undefined) throw new Error(`cannot read this process's CPU affinity: ${shown}`);
  const set = (args: string[]) =>
    execFileSync('taskset', ['-a', '-p', ...args, String(process.pid)], { stdio: 'ignore' });
  set(['-c', String(cpu)]);
  return () => set([mask]);
}

export function median(values: readonly number[]): number {
  if (values.length === 0) throw new Error('median of nothing');
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

export const MiB = 1024 * 1024;
