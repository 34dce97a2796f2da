import { NoValidEnvCopyError, RedundantEnvFile } from './uboot-env-store.js';

/**
 * The A/B boot state, as the boot script (bootloader/uboot-env/boot.cmd), the device and the
 * update server name it. Stored as U-Boot variables; numbers in hex, as setexpr writes them.
 */
export type SlotName = 'a' | 'b';

export interface AbState {
  /** The committed slot, booted normally (ab_good). */
  committed: SlotName;
  /** A slot on trial, booted until it commits or runs out of attempts (ab_try). */
  trial?: SlotName;
  /** Boot attempts made on the trial slot (ab_tries). */
  attempts: number;
  /** Attempts allowed before U-Boot goes back to the committed slot (ab_limit). */
  attemptLimit: number;
  /** The last slot whose trial failed (ab_failed). */
  failedUpgrade?: SlotName;
}

export const DEFAULT_ATTEMPT_LIMIT = 3;
/** What the boot script assumes when neither copy of the state is valid. */
export const DEFAULT_AB_STATE: AbState = {
  committed: 'a',
  attempts: 0,
  attemptLimit: DEFAULT_ATTEMPT_LIMIT,
};

/** Partition numbers of the slots (DESIGN.md contract 1). */
export const SLOT_PARTITION: Record<SlotName, number> = { a: 2, b: 3 };

export const otherSlot = (slot: SlotName): SlotName => (slot === 'a' ? 'b' : 'a');

export function isSlotName(value: unknown): value is SlotName {
  return value === 'a' || value === 'b';
}

export function abStateFromEnv(vars: Record<string, string>): AbState {
  const slot = (name: string): SlotName | undefined => {
    const value = vars[name];
    if (value === undefined || value === '') return undefined;
    if (!isSlotName(value)) throw new Error(`A/B state: ${name}=${value} is not a slot name`);
    return value;
  };
  const hex = (name: string, fallback: number): number => {
    const value = vars[name];
    if (value === undefined || value === '') return fallback;
    if (!/^(0x)?[0-9a-f]{1,8}$/i.test(value))
      throw new Error(`A/B state: ${name}=${value} is not hex`);
    return parseInt(value.replace(/^0x/i, ''), 16);
  };
  return {
    committed: slot('ab_good') ?? DEFAULT_AB_STATE.committed,
    trial: slot('ab_try'),
    attempts: hex('ab_tries', 0),
    attemptLimit: hex('ab_limit', DEFAULT_ATTEMPT_LIMIT),
    failedUpgrade: slot('ab_failed'),
  };
}

export function abStateToEnv(state: AbState): Record<string, string> {
  const vars: Record<string, string> = {
    ab_good: state.committed,
    ab_tries: state.attempts.toString(16),
    ab_limit: state.attemptLimit.toString(16),
  };
  if (state.trial) vars.ab_try = state.trial;
  if (state.failedUpgrade) vars.ab_failed = state.failedUpgrade;
  return vars;
}

/** The boot flags of a device whose boot partition is mounted at `bootDir`. */
export class AbStateStore {
  readonly file: RedundantEnvFile;

  constructor(bootDir: string) {
    this.file = RedundantEnvFile.abState(bootDir);
  }

  /** The current state; with neither copy valid, what the boot script then assumes. */
  async read(): Promise<AbState> {
    try {
      return abStateFromEnv((await this.file.read()).vars);
    } catch (error) {
      if (error instanceof NoValidEnvCopyError) return { ...DEFAULT_AB_STATE };
      throw error;
    }
  }

  async write(state: AbState): Promise<void> {
    await this.file.write(abStateToEnv(state));
  }

  /** Asks U-Boot to try `slot` at the next boots, up to the attempt limit. */
  async startTrial(slot: SlotName): Promise<AbState> {
    const current = await this.read();
    if (slot === current.committed) throw new Error(`slot ${slot} is the committed slot already`);
    const next: AbState = { ...current, trial: slot, attempts: 0, failedUpgrade: undefined };
    await this.write(next);
    return next;
  }

  /**
   * Before `slot` is written again: a trial left on it (a reboot that never came) is withdrawn,
   * and an older failure of it forgotten, for neither is about what it will hold. Without this,
   * a cut before the new trial is set would read that old failure as this update's.
   */
  async releaseStandby(slot: SlotName): Promise<AbState> {
    const current = await this.read();
    if (current.trial !== slot && current.failedUpgrade !== slot) return current;
    const next: AbState = { ...current };
    delete next.failedUpgrade;
    if (next.trial === slot) {
      delete next.trial;
      next.attempts = 0;
    }
    await this.write(next);
    return next;
  }

  /** Makes the slot on trial the committed one. */
  async commit(slot: SlotName): Promise<AbState> {
    const current = await this.read();
    if (current.trial !== slot) throw new Error(`slot ${slot} is not on trial`);
    const next: AbState = { ...current, committed: slot, trial: undefined, attempts: 0 };
    await this.write(next);
    return next;
  }
}
