import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * `npm run bench [-- NAME...]`: runs every bench/NAME.bench.ts in turn, or only those named.
 * Each module's default export runs its benchmark and prints its own tables.
 */
const SUFFIX = '.bench.ts';
const available = readdirSync(fileURLToPath(new URL('.', import.meta.url)))
  .filter((file) => file.endsWith(SUFFIX))
  .map((file) => file.slice(0, -SUFFIX.length))
  .sort();
const wanted = process.argv.slice(2);
const unknown = wanted.filter((name) => !available.includes(name));
if (unknown.length) {
  process.stderr.write(`bench: no ${unknown.join(', ')}; there are: ${available.join(', ')}\n`);
  process.exit(64);
}

for (const name of wanted.length ? wanted : available) {
  const started = performance.now();
  const module = (await import(`./${name}${SUFFIX.replace(/\.ts$/, '.js')}`)) as {
    default: () => Promise<void>;
  };
  await module.default();
  process.stdout.write(`bench ${name}: ${((performance.now() - started) / 1000).toFixed(1)} s\n\n`);
}
