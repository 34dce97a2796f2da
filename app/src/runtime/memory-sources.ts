import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';

/** Where the kernel's memory files are; tests point these at temporary folders. */
export interface MemoryRoots {
  /** procfs: meminfo and self/cgroup. */
  procRoot: string;
  /** The cgroup mount: cgroup v2 at its root, v1 controllers in sub-folders (memory/). */
  cgroupRoot: string;
}

export const SYSTEM_MEMORY_ROOTS: MemoryRoots = { procRoot: '/proc', cgroupRoot: '/sys/fs/cgroup' };

/** A cgroup memory limit found for this process. */
export interface CgroupMemory {
  version: 1 | 2;
  /** The folder holding the controller's files. */
  dir: string;
  /** undefined: the cgroup sets no limit ("max" in v2, a near-2^63 number in v1). */
  limitBytes: number | undefined;
}

/** What the kernel says about memory at one moment: the budget's and the pressure monitor's inputs. */
export interface MemoryFacts {
  cgroup: CgroupMemory | undefined;
  memTotalBytes: number;
  memAvailableBytes: number;
  /** Why a source was passed over (missing or unreadable files): each goes to the log. */
  fallbacks: string[];
}

/** cgroup v1 reports "no limit" as LONG_MAX rounded down to a page; anything this large is none. */
const V1_UNLIMITED_FLOOR = 2 ** 60;

/** Reads the memory facts synchronously: at start-up, before the server exists. */
export function readMemoryFacts(roots: MemoryRoots = SYSTEM_MEMORY_ROOTS): MemoryFacts {
  const fallbacks: string[] = [];
  const meminfo = parseMeminfo(readFileSync(join(roots.procRoot, 'meminfo'), 'utf8'));
  const cgroup = findCgroupMemory(roots, fallbacks);
  return { cgroup, ...meminfo, fallbacks };
}

/** MemTotal and MemAvailable in bytes (kernels before 3.14 lack MemAvailable: free + cached). */
export function parseMeminfo(text: string): { memTotalBytes: number; memAvailableBytes: number } {
  const kib = (key: string): number | undefined => {
    const value = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1];
    return value === undefined ? undefined : Number(value) * 1024;
  };
  const memTotalBytes = kib('MemTotal');
  if (memTotalBytes === undefined) throw new Error('meminfo has no MemTotal');
  const memAvailableBytes = kib('MemAvailable') ?? (kib('MemFree') ?? 0) + (kib('Cached') ?? 0);
  return { memTotalBytes, memAvailableBytes };
}

/**
 * This process's memory cgroup: v2 (the "0::" line of /proc/self/cgroup, memory.max) first,
 * then v1 (the "memory" controller's line, memory.limit_in_bytes). Inside a cgroup namespace
 * the listed path may not exist under the mount: then the mount's root is this cgroup.
 */
function findCgroupMemory(roots: MemoryRoots, fallbacks: string[]): CgroupMemory | undefined {
  let membership: string;
  try {
    membership = readFileSync(join(roots.procRoot, 'self', 'cgroup'), 'utf8');
  } catch (error) {
    fallbacks.push(`cannot read ${join(roots.procRoot, 'self', 'cgroup')}: ${errorCode(error)}`);
    return undefined;
  }
  const lines = membership.split('\n').map((line) => line.split(':'));
  const v2Path = lines.find((fields) => fields[0] === '0' && fields[1] === '')?.[2];
  const v1Path = lines.find((fields) => fields[1]?.split(',').includes('memory'))?.[2];
  const candidates: { version: 1 | 2; dir: string; file: string }[] = [];
  if (v2Path !== undefined) {
    for (const dir of unique([join(roots.cgroupRoot, v2Path), roots.cgroupRoot]))
      candidates.push({ version: 2, dir, file: 'memory.max' });
  }
  if (v1Path !== undefined) {
    const mount = join(roots.cgroupRoot, 'memory');
    for (const dir of unique([join(mount, v1Path), mount]))
      candidates.push({ version: 1, dir, file: 'memory.limit_in_bytes' });
  }
  for (const candidate of candidates) {
    const path = join(candidate.dir, candidate.file);
    let text: string;
    try {
      text = readFileSync(path, 'utf8').trim();
    } catch (error) {
      fallbacks.push(`cannot read ${path}: ${errorCode(error)}`);
      continue;
    }
    const limit = text === 'max' ? undefined : Number(text);
    if (limit !== undefined && !(Number.isFinite(limit) && limit > 0)) {
      fallbacks.push(`${path} holds ${JSON.stringify(text)}, not a byte count`);
      continue;
    }
    const limitBytes = limit === undefined || limit >= V1_UNLIMITED_FLOOR ? undefined : limit;
    return { version: candidate.version, dir: candidate.dir, limitBytes };
  }
  if (!candidates.length) fallbacks.push('this process is in no memory cgroup');
  return undefined;
}

/** One reading for the pressure monitor: how full memory is, and how much tasks stall on it. */
export interface MemoryReading {
  /** Bytes in use against the limit that applies (the cgroup's, else the machine's). */
  usedBytes: number;
  limitBytes: number;
  /** PSI "some avg10": the share of the last 10 s some task waited for memory, in percent. */
  stallPercent: number | undefined;
  /** Which files the reading came from, for the log. */
  source: 'cgroup v2' | 'cgroup v1' | 'meminfo';
}

/** Something that tells the pressure monitor how memory stands; the simulated one is for tests. */
export interface MemoryReadingSource {
  read(): Promise<MemoryReading>;
}

/**
 * Reads memory use from the cgroup when it sets a limit (memory.current or
 * memory.usage_in_bytes, and v2's memory.pressure), else from /proc/meminfo (MemAvailable);
 * a cgroup file that stops being readable falls back to meminfo for that reading.
 */
export class KernelMemorySource implements MemoryReadingSource {
  readonly #roots: MemoryRoots;
  readonly #cgroup: CgroupMemory | undefined;
  /** Called once per distinct reason a cgroup reading fell back to meminfo. */
  readonly #onFallback: (reason: string) => void;
  readonly #reported = new Set<string>();

  constructor(
    roots: MemoryRoots,
    cgroup: CgroupMemory | undefined,
    onFallback: (reason: string) => void = () => undefined,
  ) {
    this.#roots = roots;
    this.#cgroup = cgroup;
    this.#onFallback = onFallback;
  }

  async read(): Promise<MemoryReading> {
    const cgroup = this.#cgroup;
    if (cgroup?.limitBytes !== undefined) {
      const usageFile = cgroup.version === 2 ? 'memory.current' : 'memory.usage_in_bytes';
      try {
        const usedBytes = Number((await readFile(join(cgroup.dir, usageFile), 'utf8')).trim());
        if (!Number.isFinite(usedBytes)) throw new Error(`${usageFile} is not a number`);
        const stallPercent =
          cgroup.version === 2 ? await this.#stall(join(cgroup.dir, 'memory.pressure')) : undefined;
        return {
          usedBytes,
          limitBytes: cgroup.limitBytes,
          stallPercent,
          source: cgroup.version === 2 ? 'cgroup v2' : 'cgroup v1',
        };
      } catch (error) {
        this.#fellBack(`cannot read ${join(cgroup.dir, usageFile)}: ${errorCode(error)}`);
      }
    }
    const { memTotalBytes, memAvailableBytes } = parseMeminfo(
      await readFile(join(this.#roots.procRoot, 'meminfo'), 'utf8'),
    );
    return {
      usedBytes: memTotalBytes - memAvailableBytes,
      limitBytes: memTotalBytes,
      stallPercent: await this.#stall(join(this.#roots.procRoot, 'pressure', 'memory')),
      source: 'meminfo',
    };
  }

  /** PSI is optional (CONFIG_PSI, psi=1 on some kernels): absent means no stall figure. */
  async #stall(path: string): Promise<number | undefined> {
    const text = await readFile(path, 'utf8').catch(() => undefined);
    const value = text && /^some avg10=([\d.]+)/m.exec(text)?.[1];
    return value ? Number(value) : undefined;
  }

  #fellBack(reason: string): void {
    if (this.#reported.has(reason)) return;
    this.#reported.add(reason);
    this.#onFallback(`${reason}; using meminfo`);
  }
}

/** A reading set by hand: tests and the benchmark's simulated squeeze. */
export class SimulatedMemorySource implements MemoryReadingSource {
  constructor(public reading: MemoryReading) {}

  async read(): Promise<MemoryReading> {
    return { ...this.reading };
  }

  /** Sets the used share of the limit, in percent. */
  setUsedPercent(percent: number): void {
    this.reading = {
      ...this.reading,
      usedBytes: Math.round((this.reading.limitBytes * percent) / 100),
    };
  }
}

function errorCode(error: unknown): string {
  return (error as NodeJS.ErrnoException).code ?? (error as Error).message;
}

function unique(paths: string[]): string[] {
  return [...new Set(paths.map((path) => resolve(path)))];
}
