import test from 'ava';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { appendFileSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { hashSlotImage, sha256OfFile, slotImageLength } from '@edge/formats';
import { scratchDir } from '../../test/scratch.js';

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const scratch = () => scratchDir('slot-image');

function makeExt4(dir: string, sizeKiB: number): string {
  const tree = join(dir, 'tree');
  execFileSync('mkdir', ['-p', tree]);
  writeFileSync(join(tree, 'hello.txt'), 'hello slot\n');
  const image = join(dir, 'slot.ext4');
  execFileSync('mke2fs', ['-q', '-t', 'ext4', '-d', tree, image, `${sizeKiB}K`], {
    env: { ...process.env, E2FSPROGS_FAKE_TIME: '1' },
  });
  return image;
}

test('a file that is not ext4 is hashed whole', async (t) => {
  const path = join(scratch(), 'blob');
  const data = randomBytes(3 * 1024 * 1024 + 17);
  writeFileSync(path, data);
  t.is(await slotImageLength(path), data.length);
  t.deepEqual(await hashSlotImage(path), { sha256: sha256(data), length: data.length });
});

test('an ext4 image in a larger partition is hashed up to its own end', async (t) => {
  const image = makeExt4(scratch(), 4096);
  const imageBytes = readFileSync(image);
  t.is(imageBytes.length, 4096 * 1024);
  appendFileSync(image, randomBytes(1024 * 1024)); // what the partition held before
  const progress: number[] = [];
  const result = await hashSlotImage(image, (p) => progress.push(p.bytesDone));
  t.deepEqual(result, { sha256: sha256(imageBytes), length: imageBytes.length });
  t.is(progress.at(-1), imageBytes.length);
});

test('a truncated ext4 image is refused, not hashed short', async (t) => {
  const image = makeExt4(scratch(), 4096);
  truncateSync(image, 2048 * 1024);
  await t.throwsAsync(hashSlotImage(image), { message: /says 4194304 bytes but it holds 2097152/ });
});

test('a missing slot names the path', async (t) => {
  await t.throwsAsync(hashSlotImage('/nonexistent/slot'), { code: 'ENOENT' });
});

test('hashing stops with the reason of an aborted signal', async (t) => {
  const path = join(scratch(), 'file');
  writeFileSync(path, randomBytes(1024));
  const stopping = new Error('stopping');
  await t.throwsAsync(sha256OfFile(path, undefined, undefined, AbortSignal.abort(stopping)), {
    is: stopping,
  });
});
