import test, { type ExecutionContext } from 'ava';
import { appendFileSync } from 'node:fs';

/** Where scripts/qemu-test.sh collects one line per scenario for its closing summary. */
const RESULTS = process.env.EDGE_SCENARIO_RESULTS;

/**
 * An end-to-end scenario: an ava test with its own time limit, its progress printed as it
 * goes (a scenario runs for minutes), and its result and time recorded for the summary.
 */
export function scenario(
  title: string,
  minutes: number,
  run: (t: ExecutionContext, say: (line: string) => void) => Promise<void>,
): void {
  test(title, async (t) => {
    t.timeout(minutes * 60_000, `${title} takes more than ${minutes} minutes`);
    const started = performance.now();
    const seconds = () => (performance.now() - started) / 1000;
    const say = (line: string) =>
      process.stderr.write(`  [${seconds().toFixed(0).padStart(4)} s] ${line}\n`);
    t.teardown(() => {
      if (RESULTS) {
        appendFileSync(
          RESULTS,
          `${JSON.stringify({ title, passed: t.passed, seconds: seconds() })}\n`,
        );
      }
    });
    await run(t, say);
  });
}
