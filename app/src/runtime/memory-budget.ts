import type { MemoryFacts } from './memory-sources.js';

const MiB = 1024 * 1024;

/** The old generation's share of the memory this process may use: the rest is the OS, buffers, WASM. */
export const OLD_SPACE_SHARE = 0.25;
/** Without a cgroup limit, others already hold part of the machine: at most this share of what is free. */
export const AVAILABLE_SHARE = 0.5;
export const MIN_OLD_SPACE_MIB = 48;
export const MAX_OLD_SPACE_MIB = 2048;

/** Young generation by memory size: small semi-spaces make scavenges frequent and short. */
const SEMI_SPACE_STEPS: { belowMiB: number; semiSpaceMiB: number }[] = [
  { belowMiB: 1024, semiSpaceMiB: 2 },
  { belowMiB: 2048, semiSpaceMiB: 8 },
];

export interface MemoryBudget {
  /** The memory this process may use: the cgroup's limit or the machine's, the smaller. */
  limitBytes: number;
  limitSource: 'cgroup v2' | 'cgroup v1' | 'meminfo';
  availableBytes: number;
  oldSpaceMiB: number;
  /** undefined: V8's default (16 MiB on 64-bit) is kept. */
  semiSpaceMiB: number | undefined;
  /** What node needs on its command line for this budget. */
  nodeFlags: string[];
  /** One line per figure: why it was chosen. */
  reasons: string[];
}

export interface BudgetOptions {
  /** memory.heapMiB: 0 derives the old generation's size, else this size is used as given. */
  heapMiB: number;
}

/** Derives V8's heap ceiling (old and young generations) from the memory the device has. */
export function memoryBudget(facts: MemoryFacts, options: BudgetOptions): MemoryBudget {
  const cgroupLimit = facts.cgroup?.limitBytes;
  const limitedByCgroup = cgroupLimit !== undefined && cgroupLimit < facts.memTotalBytes;
  const limitBytes = limitedByCgroup ? cgroupLimit : facts.memTotalBytes;
  const limitSource = limitedByCgroup ? (`cgroup v${facts.cgroup!.version}` as const) : 'meminfo';
  const limitMiB = limitBytes / MiB;
  const reasons = [
    limitedByCgroup
      ? `memory limit ${mib(limitBytes)} from cgroup v${facts.cgroup!.version} (${facts.cgroup!.dir}), below MemTotal ${mib(facts.memTotalBytes)}`
      : `memory limit ${mib(limitBytes)}: MemTotal (${facts.cgroup ? 'the cgroup sets no lower limit' : 'no cgroup limit'})`,
  ];

  let oldSpaceMiB: number;
  if (options.heapMiB > 0) {
    oldSpaceMiB = options.heapMiB;
    reasons.push(`old generation ${oldSpaceMiB} MiB: set by memory.heapMiB`);
  } else {
    const byLimit = limitMiB * OLD_SPACE_SHARE;
    // In a cgroup the host's MemAvailable says nothing about our share; on a machine it does.
    const byAvailable = limitedByCgroup
      ? Infinity
      : (facts.memAvailableBytes / MiB) * AVAILABLE_SHARE;
    const wanted = Math.min(byLimit, byAvailable);
    oldSpaceMiB = Math.floor(Math.min(MAX_OLD_SPACE_MIB, Math.max(MIN_OLD_SPACE_MIB, wanted)));
    const why =
      byAvailable < byLimit
        ? `${AVAILABLE_SHARE * 100}% of MemAvailable ${mib(facts.memAvailableBytes)}`
        : `${OLD_SPACE_SHARE * 100}% of the limit`;
    const clamp =
      oldSpaceMiB !== Math.floor(wanted)
        ? `, clamped to ${MIN_OLD_SPACE_MIB}..${MAX_OLD_SPACE_MIB} MiB from ${Math.floor(wanted)}`
        : '';
    reasons.push(`old generation ${oldSpaceMiB} MiB: ${why}${clamp}`);
  }

  const step = SEMI_SPACE_STEPS.find((s) => limitMiB < s.belowMiB);
  const semiSpaceMiB = step?.semiSpaceMiB;
  reasons.push(
    step
      ? `semi-space ${step.semiSpaceMiB} MiB (young generation ${3 * step.semiSpaceMiB} MiB): limit below ${step.belowMiB} MiB, frequent short scavenges`
      : "semi-space: V8's default, memory is not short",
  );

  const nodeFlags = [`--max-old-space-size=${oldSpaceMiB}`];
  if (semiSpaceMiB !== undefined) nodeFlags.push(`--max-semi-space-size=${semiSpaceMiB}`);
  return {
    limitBytes,
    limitSource,
    availableBytes: facts.memAvailableBytes,
    oldSpaceMiB,
    semiSpaceMiB,
    nodeFlags,
    reasons,
  };
}

/**
 * V8's heap_size_limit for a budget: old generation plus the young generation (three
 * semi-spaces: two for scavenges, one for new large objects). Compared with the running
 * isolate's to tell whether node was started with the budget's flags.
 */
export function expectedHeapLimitBytes(budget: MemoryBudget, defaultSemiSpaceMiB = 16): number {
  return (budget.oldSpaceMiB + 3 * (budget.semiSpaceMiB ?? defaultSemiSpaceMiB)) * MiB;
}

function mib(bytes: number): string {
  return `${(bytes / MiB).toFixed(0)} MiB`;
}
