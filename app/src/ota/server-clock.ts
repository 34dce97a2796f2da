/**
 * The update server's time as this device sees it, learnt from the Date header of its answers.
 * A Pi 4 has no battery-backed clock: until NTP sets it, a device may believe it is 1970, and
 * the tokens it signs would be refused as expired. Tokens are signed in the server's time,
 * which is the clock that checks them.
 */
export class ServerClock {
  #offsetMs = 0;

  constructor(private readonly localNow: () => number = Date.now) {}

  /** Our own time, in ms: what `observe` takes the sending and receiving times in. */
  local(): number {
    return this.localNow();
  }

  /** How far the server's clock is ahead of ours (negative: behind), to the second. */
  get offsetMs(): number {
    return this.#offsetMs;
  }

  /**
   * Learns from an answer: its Date header (whole seconds, sent while we waited) against the
   * middle of our wait. An answer without a usable Date changes nothing.
   */
  observe(dateHeader: string | null, sentAtMs: number, receivedAtMs: number): void {
    const serverMs = dateHeader === null ? NaN : Date.parse(dateHeader);
    if (!Number.isFinite(serverMs)) return;
    // The header drops the milliseconds: the server's time was within the second after it.
    this.#offsetMs = Math.round(serverMs + 500 - (sentAtMs + receivedAtMs) / 2);
  }

  now(): Date {
    return new Date(this.localNow() + this.#offsetMs);
  }
}
