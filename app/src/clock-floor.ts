import { closeSync, openSync, statSync, utimesSync } from 'node:fs';

/**
 * A Pi 4 has no battery-backed clock: it starts in 1970 until something sets it. At boot, rcS
 * moves the clock forward to the newer of the release's build time and this file's mtime, so
 * the device never runs earlier than it has already been (expiry checks, certificates, logs).
 * The edge server moves the file's mtime up to now from time to time and when it stops.
 */
export type ClockFloorSave = 'saved' | 'unchanged' | 'no-directory';

/**
 * Sets the file's mtime to `now` when that is later than the one it holds (never back: a
 * clock running behind must not lower the floor), creating the file if it is missing.
 * 'no-directory' when its folder does not exist (a host without /data).
 */
export function saveClockFloor(path: string, now = new Date()): ClockFloorSave {
  let noted: number | undefined;
  try {
    noted = statSync(path).mtimeMs;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  if (noted !== undefined && noted >= now.getTime()) return 'unchanged';
  if (noted === undefined) {
    try {
      closeSync(openSync(path, 'a'));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 'no-directory';
      throw error;
    }
  }
  utimesSync(path, now, now);
  return 'saved';
}
