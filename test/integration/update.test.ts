import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './qemu-device.js';
import { SCENARIO_FLEET_DIR } from './update-scenarios.js';
import { scenario } from './scenario.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

// The demo is the update scenario as a fleet sees it: v1 boots, v2 is published and rolled
// out, the device downloads the delta, patches slot B, reboots into it and commits; the run
// ends only when the device's firmware hash is v2's.
scenario('update: v1 updates itself by delta to v2 and commits (the demo)', 15, async (t) => {
  const port = await freePort();
  const output: string[] = [];
  const demo = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'scripts/demo.ts')], {
    cwd: ROOT,
    env: {
      ...process.env,
      EDGE_DEMO_PORT: String(port),
      EDGE_DEMO_DIR: SCENARIO_FLEET_DIR,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  demo.stdout.on('data', (chunk: Buffer) => output.push(chunk.toString()));
  demo.stderr.on('data', (chunk: Buffer) => output.push(chunk.toString()));
  const code = await new Promise<number | null>((resolve) => demo.on('exit', resolve));
  const text = output.join('');
  t.log(
    text
      .split('\n')
      .filter((line) => /^\[|Summary|^ {2}\S/.test(line))
      .join('\n'),
  );
  t.is(code, 0);
  t.regex(text, /update: committed 1\.1\.0/);
  t.regex(text, /running {11}slot b, committed b/);
  t.regex(text, /downloaded {8}[\d,]+ bytes \(qemu\/1\.1\.0\/rootfs\.from-1\.0\.0\.bsdiff\)/);
});
