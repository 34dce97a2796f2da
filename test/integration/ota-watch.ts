import { getJson } from './fleet.js';

/** What watching needs of a device (QEMU virt or raspi4b): its console and its HTTP port. */
export interface WatchedDevice {
  readonly console: string;
  readonly baseUrl: string;
}

export interface OtaStatus {
  lastDownload: { target: string; bytes: number } | null;
  failedVersions: string[];
  status: {
    state: string;
    targetVersion?: string;
    progress?: number;
    bytesDone?: number;
    bytesTotal?: number;
    reason?: string;
  };
}

/** One line for a status: "downloading 1.1.0 42%". */
export function describeStatus({ state, targetVersion, progress, reason }: OtaStatus['status']) {
  return `${state}${targetVersion ? ` ${targetVersion}` : ''}${progress !== undefined ? ` ${(progress * 100).toFixed(0)}%` : ''}${reason ? `: ${reason}` : ''}`;
}

export interface WatchOptions {
  timeoutMs: number;
  /** Called with every new status line and every boot message from the console. */
  onEvent?: (line: string) => void;
  pollMs?: number;
}

/**
 * Polls the device's update status until `done` accepts it, passing on status changes and
 * the console's boot messages; throws at the deadline with the last status and console lines.
 */
export async function watchOta(
  device: WatchedDevice,
  done: (ota: OtaStatus) => boolean | Promise<boolean>,
  { timeoutMs, onEvent = () => undefined, pollMs = 1000 }: WatchOptions,
): Promise<OtaStatus> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  let consoleSeen = device.console.length;
  while (Date.now() < deadline) {
    const printed = device.console.slice(consoleSeen);
    for (const line of printed.split('\n').slice(0, -1)) {
      if (/edge-boot:|rcS: up|edge-trial-watchdog|Kernel panic/.test(line)) {
        onEvent(`device console: ${line.trim()}`);
      }
    }
    consoleSeen += printed.lastIndexOf('\n') + 1;
    const ota = await getJson<OtaStatus>(`${device.baseUrl}/api/v1/ota/status`);
    if (ota) {
      const shown = describeStatus(ota.status);
      if (shown !== last) onEvent(`update: ${shown}`);
      last = shown;
      if (await done(ota)) return ota;
    }
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
  throw new Error(
    `the device's update did not get there within ${timeoutMs / 1000} s (last: ${last || 'no answer'}); console:\n${device.console.slice(-1500)}`,
  );
}

/** The update states the device shows over `ms` (polled every second). */
export async function statesDuring(device: WatchedDevice, ms: number): Promise<Set<string>> {
  const states = new Set<string>();
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const ota = await getJson<OtaStatus>(`${device.baseUrl}/api/v1/ota/status`);
    if (ota) states.add(ota.status.state);
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  return states;
}
