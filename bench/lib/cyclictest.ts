import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

/** cyclictest's histogram has one bucket per microsecond up to this; later wake-ups count as overflows. */
const HISTOGRAM_MICROS = 100_000;

export interface WakeupLatency {
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  runs: number;
}

/**
 * rt-tests' cyclictest: one SCHED_FIFO thread in C, its memory locked, waking every periodMs
 * for the given seconds. How late it wakes is what this machine's kernel (and hypervisor) give
 * any real-time thread: the floor under a scheduler's own jitter. Undefined when not installed.
 */
export async function cyclictest(options: {
  periodMs: number;
  seconds: number;
  priority: number;
  cpu?: number;
}): Promise<WakeupLatency | undefined> {
  let stdout: string;
  try {
    ({ stdout } = await promisify(execFile)(
      'cyclictest',
      [
        '--mlockall',
        `--priority=${options.priority}`,
        `--interval=${options.periodMs * 1000}`,
        `--duration=${options.seconds}`,
        `--histogram=${HISTOGRAM_MICROS}`,
        ...(options.cpu === undefined ? [] : [`--affinity=${options.cpu}`]),
        '--quiet',
      ],
      { maxBuffer: 8 << 20 },
    ));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  return parseHistogram(stdout);
}

/** The histogram lines ("000123 000045": 45 wake-ups 123 µs late) and the summary's maximum. */
export function parseHistogram(output: string): WakeupLatency {
  const counts: number[] = [];
  for (const line of output.split('\n')) {
    const bucket = /^(\d+) (\d+)$/.exec(line);
    if (bucket) counts[Number(bucket[1])] = Number(bucket[2]);
  }
  const overflows = Number(/^# Histogram Overflows: (\d+)/m.exec(output)?.[1] ?? 0);
  const maxMicros = Number(/^# Max Latencies: (\d+)/m.exec(output)?.[1]);
  const runs = counts.reduce((sum, count) => sum + (count ?? 0), 0) + overflows;
  if (!runs || Number.isNaN(maxMicros))
    throw new Error(`cyclictest printed no histogram:\n${output}`);
  const quantile = (q: number): number => {
    let seen = 0;
    for (const [micros, count] of counts.entries()) {
      seen += count ?? 0;
      if (seen >= q * runs) return micros;
    }
    return maxMicros; // among the overflows
  };
  return {
    p50Ms: quantile(0.5) / 1000,
    p99Ms: quantile(0.99) / 1000,
    maxMs: maxMicros / 1000,
    runs,
  };
}
