// The closing lines of scripts/qemu-test.sh: one line per scenario, then "N passed, N failed".
import { existsSync, readFileSync } from 'node:fs';

const file = process.argv[2]!;
const results = existsSync(file)
  ? readFileSync(file, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as { title: string; passed: boolean; seconds: number })
  : [];
process.stdout.write('\nScenarios\n');
for (const { title, passed, seconds } of results) {
  process.stdout.write(
    `  ${passed ? 'pass' : 'FAIL'}  ${seconds.toFixed(0).padStart(5)} s  ${title}\n`,
  );
}
const passed = results.filter((result) => result.passed).length;
process.stdout.write(`${passed} passed, ${results.length - passed} failed\n`);
