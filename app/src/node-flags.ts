import { parseArgs } from 'node:util';
import { DEFAULT_CONFIG_FILE, loadConfig } from './config.js';
import { memoryBudget } from './runtime/memory-budget.js';
import { readMemoryFacts } from './runtime/memory-sources.js';

/**
 * `node node-flags.mjs`: prints the node flags of this device's memory budget
 * (`--max-old-space-size=… --max-semi-space-size=…`) for the start script to pass node.
 * V8 sizes its heap when the isolate is made: v8.setFlagsFromString at run time leaves
 * heap_size_limit unchanged (measured on Node 20), and a re-exec would keep a parent resident,
 * so the start script asks first, once per boot. A bundle of its own (app/build.ts), a few KB
 * with the config and the memory figures only: asking costs a node start, not the server's.
 */
const { values } = parseArgs({
  options: { config: { type: 'string', short: 'c' } },
  strict: false,
});
const named = typeof values.config === 'string' ? values.config : process.env.EDGE_CONFIG;
try {
  const config = loadConfig({
    file: named ? { path: named, required: true } : { path: DEFAULT_CONFIG_FILE, required: false },
    env: process.env,
  });
  const facts = readMemoryFacts({
    procRoot: config.memory.procRoot,
    cgroupRoot: config.memory.cgroupRoot,
  });
  const budget = memoryBudget(facts, { heapMiB: config.memory.heapMiB });
  process.stdout.write(`${budget.nodeFlags.join(' ')}\n`);
  for (const reason of [...facts.fallbacks, ...budget.reasons]) {
    process.stderr.write(`edge-server: ${reason}\n`);
  }
} catch (error) {
  // No flags: node's defaults; the server itself reports a bad configuration when it starts.
  process.stderr.write(`edge-server: no memory budget: ${(error as Error).message}\n`);
}
