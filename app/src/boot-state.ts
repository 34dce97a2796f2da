import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { AbStateStore, isSlotName, type AbState, type SlotName } from '@edge/formats';

/** How this boot came about, as the boot script told the kernel (edge.slot, edge.trial). */
export interface BootedSlot {
  slot: SlotName;
  /** Booted as a trial: the slot commits once healthy, or U-Boot falls back. */
  trial: boolean;
}

export function bootedSlotFromCmdline(cmdline: string): BootedSlot | undefined {
  const slot = /(?:^|\s)edge\.slot=(\S+)/.exec(cmdline)?.[1];
  if (!isSlotName(slot)) return undefined;
  return { slot, trial: /(?:^|\s)edge\.trial=1(?:\s|$)/.test(cmdline) };
}

export type BootReport =
  { known: false; reason: string } | ({ known: true; booted: BootedSlot } & AbState);

export interface BootStateOptions {
  /** Where the boot partition (p1, holding the A/B state) is mounted. */
  stateDir: string;
  /** Touched once the slot is committed: the trial watchdog stops waiting when it appears. */
  commitMarker: string;
  cmdlinePath?: string;
}

/** The device's A/B boot state: which slot runs, and the flags U-Boot acts on. */
export class BootState {
  readonly store: AbStateStore;

  constructor(private readonly options: BootStateOptions) {
    this.store = new AbStateStore(options.stateDir);
  }

  async booted(): Promise<BootedSlot | undefined> {
    const cmdline = await readFile(this.options.cmdlinePath ?? '/proc/cmdline', 'utf8').catch(
      () => '',
    );
    return bootedSlotFromCmdline(cmdline);
  }

  async report(): Promise<BootReport> {
    const booted = await this.booted();
    if (!booted)
      return { known: false, reason: 'not booted by the edge boot script (no edge.slot=)' };
    try {
      return { known: true, booted, ...(await this.store.read()) };
    } catch (error) {
      return { known: false, reason: `A/B state unreadable: ${(error as Error).message}` };
    }
  }

  /**
   * Commits the running slot when it was booted as a trial and is still the slot on trial;
   * marks the commit for the trial watchdog in every case where the slot is settled.
   */
  async commitIfTrial(): Promise<'committed' | 'not a trial'> {
    const booted = await this.booted();
    if (!booted) return 'not a trial';
    const state = await this.store.read();
    let outcome: 'committed' | 'not a trial' = 'not a trial';
    if (booted.trial && state.trial === booted.slot) {
      await this.store.commit(booted.slot);
      outcome = 'committed';
    }
    await mkdir(dirname(this.options.commitMarker), { recursive: true });
    await writeFile(this.options.commitMarker, `${booted.slot}\n`);
    return outcome;
  }
}
