import { openSync, readFileSync, readlinkSync, readSync } from 'node:fs';

/**
 * CPU time of one thread of this process, from the kernel's scheduler statistics: the first
 * field of /proc/self/task/<tid>/schedstat is the nanoseconds the thread has run. Node has no
 * per-thread CPU clock before 23.9 (process.threadCpuUsage), and the host runs 20, the device 22.
 */

/** The calling thread's kernel thread id (the last component of /proc/thread-self), or undefined. */
export function currentThreadId(): number | undefined {
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    return Number.isInteger(tid) && tid > 0 ? tid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Milliseconds of CPU that thread `tid` of this process has used, or undefined (no /proc, no
 * schedstat, no such thread). For a thread running on another CPU, the kernel brings the figure
 * up to date at each scheduler tick: it can lag by one tick (4 ms at HZ=250).
 */
export function threadCpuMs(tid: number): number | undefined {
  try {
    return parseSchedstat(readFileSync(`/proc/self/task/${tid}/schedstat`, 'latin1'));
  } catch {
    return undefined;
  }
}

/**
 * A clock of the calling thread's own CPU time in milliseconds, or undefined where /proc has no
 * schedstat (or shows zeros: a kernel without schedstats). Exact, not one tick behind:
 * getrusage (process.cpuUsage) makes the kernel first add the time the caller has run since the
 * last tick (thread_group_cputime updates the current task). The file stays open (one pread per
 * reading); a worker's fds are closed when it ends (Worker's trackUnmanagedFds).
 */
export function ownThreadCpuClock(): (() => number) | undefined {
  let fd: number;
  try {
    fd = openSync('/proc/thread-self/schedstat', 'r');
  } catch {
    return undefined;
  }
  const buffer = Buffer.alloc(96);
  const read = (): number | undefined => {
    process.cpuUsage();
    try {
      return parseSchedstat(
        buffer.toString('latin1', 0, readSync(fd, buffer, 0, buffer.length, 0)),
      );
    } catch {
      return undefined;
    }
  };
  const first = read();
  if (first === undefined || first <= 0) return undefined;
  let last = first;
  // A failed read later on (none is expected) repeats the last figure: the call is charged 0.
  return () => (last = read() ?? last);
}

function parseSchedstat(text: string): number | undefined {
  const ns = Number(text.split(' ', 1)[0]);
  return Number.isFinite(ns) && ns >= 0 ? ns / 1e6 : undefined;
}
