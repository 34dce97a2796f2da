import type { SchedulerClock } from '../../src/runtime/scheduler.js';

/** Lets what a timer started (async runs, their promises) settle before time moves on. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

/** A scheduler clock that moves only when told; each timer fires `latenessMs` after it is due. */
export class FakeClock implements SchedulerClock {
  time = 0;
  latenessMs = 0;
  #timers: { due: number; callback: () => void }[] = [];

  now = () => this.time;
  setTimer = (callback: () => void, delayMs: number) => {
    const timer = { due: this.time + delayMs, callback };
    this.#timers.push(timer);
    return timer;
  };
  clearTimer = (handle: unknown) => {
    this.#timers = this.#timers.filter((timer) => timer !== handle);
  };

  /** Fires due timers in order until `until`, letting what each starts settle. */
  async advanceTo(until: number): Promise<void> {
    await settle();
    for (;;) {
      this.#timers.sort((a, b) => a.due - b.due);
      const next = this.#timers[0];
      if (!next || next.due + this.latenessMs > until) break;
      this.#timers.shift();
      this.time = Math.max(this.time, next.due + this.latenessMs);
      next.callback();
      await settle();
    }
    this.time = until;
  }
}
