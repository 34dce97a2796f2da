/**
 * When an update that failed before its reboot is tried again. The first failure is tried again
 * at the next check-in (often with the full image instead of a delta that failed); each later
 * consecutive failure of the same release waits twice as long, from one check-in interval up
 * to MAX_RETRY_DELAY_SECONDS: a target broken on the server must not have a fleet download it
 * every minute forever.
 */
export interface UpdateRetry {
  version: string;
  /** Consecutive failures of this release. */
  failures: number;
  /** ISO time before which it is not tried again. */
  notBefore: string;
}

export const MAX_RETRY_DELAY_SECONDS = 6 * 3600;

/** The retry record after another failure of `version` (a new release starts the count again). */
export function afterFailure(
  previous: UpdateRetry | undefined,
  version: string,
  checkInSeconds: number,
  now: Date,
): UpdateRetry {
  const failures = previous?.version === version ? previous.failures + 1 : 1;
  const delaySeconds =
    failures === 1 ? 0 : Math.min(checkInSeconds * 2 ** (failures - 2), MAX_RETRY_DELAY_SECONDS);
  return {
    version,
    failures,
    notBefore: new Date(now.getTime() + delaySeconds * 1000).toISOString(),
  };
}

/** Whether `version` waits for its retry time. */
export function waitsForRetry(retry: UpdateRetry | undefined, version: string, now: Date): boolean {
  return retry?.version === version && now.getTime() < Date.parse(retry.notBefore);
}
