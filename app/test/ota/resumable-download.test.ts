import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CHUNK, DownloadError, downloadResumable } from '../../src/ota/resumable-download.js';
import { TokenBucket } from '../../src/ota/token-bucket.js';
import { startRangeServer } from './range-server.js';
import { seededRandom } from './seeded.js';

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
// RAM-backed when the host has it: the downloader syncs every chunk, and a busy disk makes that slow.
const scratchRoot = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
const scratch = () => mkdtempSync(join(scratchRoot, 'edge-download-'));

test('connections cut at random offsets: the download resumes and fetches at most one chunk again', async (t) => {
  const content = randomBytes(6 * CHUNK + 12345);
  const server = await startRangeServer(content);
  t.teardown(async () => {
    await server.close();
  });
  const random = seededRandom(20261129);
  const cuts = Array.from({ length: 4 }, () => Math.floor(random() * 2 * CHUNK) + 1000);
  t.log(`seed 20261129, cuts after ${cuts.join(', ')} bytes`);
  server.cutAfter = (n) => cuts[n - 1];
  const destination = join(scratch(), 'delta');
  let fetched = 0;
  await downloadResumable({
    file: { url: server.url, length: content.length, sha256: sha256(content) },
    destination,
    retryDelayMs: 1,
    attempts: 10,
    onProgress: (p) => (fetched = Math.max(fetched, p.bytesDone)),
  });
  t.is(sha256(readFileSync(destination)), sha256(content));
  t.true(server.requests.length === cuts.length + 1);
  t.true(server.requests.slice(1).every((r) => r.range?.startsWith('bytes=') && r.ifRange));
  // Every resume starts at most one chunk before where the previous connection stopped.
  let delivered = 0;
  for (const [index, cut] of cuts.entries()) {
    delivered = Number(/bytes=(\d+)-/.exec(server.requests[index]?.range ?? 'bytes=0-')![1]) + cut;
    const resumedAt = Number(/bytes=(\d+)-/.exec(server.requests[index + 1]!.range!)![1]);
    t.true(delivered - resumedAt < CHUNK, `resumed at ${resumedAt} after ${delivered} bytes`);
  }
});

test('a connection that goes silent (a dead link) is given up and the download resumes', async (t) => {
  const content = randomBytes(3 * CHUNK);
  const server = await startRangeServer(content);
  t.teardown(async () => {
    await server.close();
  });
  server.stallOnCut = true;
  server.cutAfter = (n) => (n === 1 ? CHUNK + 4096 : undefined);
  const destination = join(scratch(), 'delta');
  await downloadResumable({
    file: { url: server.url, length: content.length, sha256: sha256(content) },
    destination,
    retryDelayMs: 1,
    stallTimeoutMs: 1000,
  });
  t.is(sha256(readFileSync(destination)), sha256(content));
  t.is(server.requests.length, 2);
  t.is(server.requests[1]!.range, `bytes=${CHUNK}-`);
});

test('waiting for the bandwidth limit is not taken for a dead link', async (t) => {
  const content = randomBytes(1024);
  const server = await startRangeServer(content);
  t.teardown(async () => {
    await server.close();
  });
  // A limit that makes every chunk wait twice the stall timeout: the wait must not count.
  class SlowBucket extends TokenBucket {
    override async take(): Promise<void> {
      await new Promise((resolve) => setTimeout(resolve, 3000));
    }
  }
  await downloadResumable({
    file: { url: server.url, length: content.length, sha256: sha256(content) },
    destination: join(scratch(), 'delta'),
    bucket: new SlowBucket(1, 1),
    stallTimeoutMs: 1500,
    attempts: 1,
  });
  t.is(server.requests.length, 1);
});

test('a restart resumes from the partial file left on disk', async (t) => {
  const content = randomBytes(3 * CHUNK + 7);
  const server = await startRangeServer(content);
  t.teardown(async () => {
    await server.close();
  });
  const destination = join(scratch(), 'image');
  server.cutAfter = (n) => (n === 1 ? 2 * CHUNK + 100 : undefined);
  const file = { url: server.url, length: content.length, sha256: sha256(content) };
  await t.throwsAsync(downloadResumable({ file, destination, attempts: 1 }), {
    instanceOf: DownloadError,
  });
  // However much arrived before the cut (a reset may drop the last bytes in flight), the
  // restart asks for the rest from the last whole chunk on disk.
  const kept = statSync(`${destination}.part`).size;
  t.true(kept >= CHUNK && kept <= 2 * CHUNK + 100, `kept ${kept} bytes`);
  await downloadResumable({ file, destination, attempts: 1 });
  t.is(sha256(readFileSync(destination)), sha256(content));
  t.is(server.requests[1]?.range, `bytes=${Math.floor(kept / CHUNK) * CHUNK}-`);
});

test('a torn ETag file left by a power cut starts the download over instead of failing for good', async (t) => {
  const content = randomBytes(2 * CHUNK + 7);
  const server = await startRangeServer(content);
  t.teardown(async () => {
    await server.close();
  });
  const destination = join(scratch(), 'image');
  // What a cut can leave: part of the file, and an empty file where its ETag was being written.
  writeFileSync(`${destination}.part`, content.subarray(0, CHUNK + 10));
  writeFileSync(`${destination}.part.json`, '');
  const file = { url: server.url, length: content.length, sha256: sha256(content) };
  await downloadResumable({ file, destination, attempts: 1 });
  t.is(sha256(readFileSync(destination)), sha256(content));
  t.is(server.requests[0]?.range, undefined, 'no ETag to trust: from the start');
});

test.serial(
  'the partial file is synced at each chunk boundary, before a byte past it',
  async (t) => {
    const content = randomBytes(4 * CHUNK + 4321);
    const server = await startRangeServer(content);
    t.teardown(async () => {
      await server.close();
    });
    // A cut at an odd offset: the resumed connection's pieces fall elsewhere than the first one's.
    server.cutAfter = (n) => (n === 1 ? CHUNK + 54_321 : undefined);
    // Every datasync of any file handle records the file's size when it is called.
    const probe = await open(process.execPath, 'r');
    const prototype = Object.getPrototypeOf(probe) as { datasync: FileHandle['datasync'] };
    await probe.close();
    const datasync = prototype.datasync;
    const syncedAt: number[] = [];
    prototype.datasync = async function (this: FileHandle) {
      syncedAt.push((await this.stat()).size);
      return datasync.call(this);
    };
    try {
      await downloadResumable({
        file: { url: server.url, length: content.length, sha256: sha256(content) },
        destination: join(scratch(), 'image'),
        retryDelayMs: 1,
      });
    } finally {
      prototype.datasync = datasync;
    }
    t.is(server.requests.length, 2);
    t.true(
      syncedAt.every((size) => size % CHUNK === 0 || size === content.length),
      `synced at ${syncedAt.join(', ')}`,
    );
    t.true(syncedAt.length >= 4, `synced at ${syncedAt.join(', ')}`);
  },
);

test('a changed file on the server (ETag) starts the download over', async (t) => {
  const old = randomBytes(2 * CHUNK + 1);
  const destination = join(scratch(), 'image');
  writeFileSync(`${destination}.part`, old.subarray(0, CHUNK + 10));
  writeFileSync(`${destination}.part.json`, JSON.stringify({ url: 'x', etag: '"old"' }));
  const content = randomBytes(2 * CHUNK + 1);
  const server = await startRangeServer(content);
  t.teardown(async () => {
    await server.close();
  });
  await downloadResumable({
    file: { url: server.url, length: content.length, sha256: sha256(content) },
    destination,
  });
  t.is(sha256(readFileSync(destination)), sha256(content));
  t.is(server.requests[0]?.ifRange, '"old"');
});

test('a server sending more bytes than signed is refused', async (t) => {
  const content = randomBytes(CHUNK);
  const server = await startRangeServer(content);
  t.teardown(async () => {
    await server.close();
  });
  server.extraBytes = 10;
  const destination = join(scratch(), 'delta');
  const error = await t.throwsAsync(
    downloadResumable({
      file: { url: server.url, length: content.length, sha256: sha256(content) },
      destination,
    }),
    { instanceOf: DownloadError },
  );
  t.is(error.code, 'TOO_LONG');
  t.false(existsSync(destination));
});

test('bytes that do not match the signed hash are refused and thrown away', async (t) => {
  const content = randomBytes(CHUNK + 3);
  const server = await startRangeServer(content);
  t.teardown(async () => {
    await server.close();
  });
  const destination = join(scratch(), 'delta');
  const error = await t.throwsAsync(
    downloadResumable({
      file: { url: server.url, length: content.length, sha256: 'ab'.repeat(32) },
      destination,
    }),
    { instanceOf: DownloadError },
  );
  t.is(error.code, 'HASH_MISMATCH');
  t.false(existsSync(destination));
  t.false(existsSync(`${destination}.part`));
});

test('the token bucket limits the download rate', async (t) => {
  const content = randomBytes(256 * 1024);
  const server = await startRangeServer(content);
  t.teardown(async () => {
    await server.close();
  });
  const started = performance.now();
  await downloadResumable({
    file: { url: server.url, length: content.length, sha256: sha256(content) },
    destination: join(scratch(), 'slow'),
    bucket: new TokenBucket(1024 * 1024, 64 * 1024),
  });
  // 256 KiB at 1 MiB/s with a 64 KiB burst: about 190 ms at least.
  t.true(performance.now() - started >= 180);
});
