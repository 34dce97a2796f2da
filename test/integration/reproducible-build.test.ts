import { execFileSync } from 'node:child_process';
import { readFileSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { scratchDir } from './images.js';
import { scenario } from './scenario.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

function build(out: string): { sha256: string; bytes: number } {
  execFileSync(join(ROOT, 'scripts/build-image.sh'), ['--version', '0.0.1-repro', '--out', out], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const manifest = JSON.parse(readFileSync(join(out, '0.0.1-repro', 'manifest.json'), 'utf8')) as {
    slotImage: { sha256: string; bytes: number };
  };
  return manifest.slotImage;
}

scenario('two builds from the same inputs give byte-identical slot images', 6, async (t) => {
  const { dir, cleanup } = scratchDir('repro');
  t.teardown(cleanup);
  const first = build(join(dir, 'first'));
  // What the host does to the checkout between builds must not matter: touch the inputs.
  const now = new Date();
  for (const file of ['board/common/rootfs/etc/inittab', 'bootloader/uboot-env/boot.cmd']) {
    utimesSync(join(ROOT, file), now, now);
  }
  const second = build(join(dir, 'second'));
  t.is(second.sha256, first.sha256);
  t.is(second.bytes, 256 * 1024 * 1024);
});
