/** Named conditions the server waits for before it says it is ready to serve. */
export class Readiness {
  readonly #waitingFor = new Set<string>();

  require(condition: string): void {
    this.#waitingFor.add(condition);
  }

  satisfy(condition: string): void {
    this.#waitingFor.delete(condition);
  }

  get waitingFor(): string[] {
    return [...this.#waitingFor];
  }

  get ready(): boolean {
    return this.#waitingFor.size === 0;
  }
}
