import { sha256OfFile } from '@edge/formats';

/**
 * `node --import tsx bench/agent/hash-file.ts FILE`: the agent's slot hash as a process of its
 * own, so that its start-up counts as sha256sum's does. Prints sha256sum's line, then the
 * hashing time alone (start-up excluded) as `hash-seconds N`.
 */
const path = process.argv[2];
if (!path) {
  process.stderr.write('usage: hash-file.ts FILE\n');
  process.exit(64);
}
const started = performance.now();
const hash = await sha256OfFile(path);
const seconds = (performance.now() - started) / 1000;
process.stdout.write(`${hash}  ${path}\nhash-seconds ${seconds}\n`);
