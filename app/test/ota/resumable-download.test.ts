import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CHUNK, DownloadError, downloadResumable } from '../../src/ota/resumable-download.js';
import { ServerClock } from '../../src/ota/server-clock.js';
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

// ---- the token bucket that limits the download rate ----

function clock() {
  let now = 0;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

test('a burst goes at once, then bytes wait for the rate', (t) => {
  const time = clock();
  const bucket = new TokenBucket(1000, 500, time.now);
  t.is(bucket.reserve(500), 0);
  t.is(bucket.reserve(250), 250);
  time.advance(250);
  t.is(bucket.reserve(0), 0);
  t.is(bucket.reserve(1000), 1000);
});

test('saved tokens never exceed the burst', (t) => {
  const time = clock();
  const bucket = new TokenBucket(1000, 100, time.now);
  bucket.reserve(100);
  time.advance(60_000);
  t.is(bucket.reserve(100), 0);
  t.is(bucket.reserve(100), 100);
});

test('the limit changes while running', (t) => {
  const time = clock();
  const bucket = new TokenBucket(1000, 1000, time.now);
  bucket.reserve(1000);
  bucket.setLimit(10_000);
  t.is(bucket.reserve(1000), 100);
  bucket.setLimit(100, 10);
  time.advance(1000);
  t.is(bucket.burst, 10);
  t.is(bucket.reserve(10), 0);
});

test('no limit: Infinity never waits', (t) => {
  const bucket = new TokenBucket(Infinity, 1);
  t.is(bucket.reserve(1e12), 0);
});

test('a rate that is not positive is refused', (t) => {
  t.throws(() => new TokenBucket(0, 1), { instanceOf: RangeError });
  t.throws(() => new TokenBucket(1, -1), { instanceOf: RangeError });
});

test('take waits in real time, and an abort stops the wait', async (t) => {
  const bucket = new TokenBucket(10_000, 1);
  const started = performance.now();
  await bucket.take(500);
  t.true(performance.now() - started >= 45);
  const controller = new AbortController();
  const waiting = bucket.take(100_000, controller.signal);
  controller.abort(new Error('stopped'));
  await t.throwsAsync(waiting, { message: 'stopped' });
});

test('a limit set after running unlimited applies', (t) => {
  const time = clock();
  const bucket = new TokenBucket(Infinity, 1000, time.now);
  t.is(bucket.reserve(10), 0);
  bucket.setLimit(100);
  time.advance(1);
  t.is(bucket.reserve(5000), 40_000);
});

// ---- the server's clock, from the Date of its answers ----

const at = (iso: string) => Date.parse(iso);

test('the clock follows the server by the Date of its answers', (t) => {
  let local = at('1970-01-01T00:00:10Z');
  const clock = new ServerClock(() => local);
  t.is(clock.now().getTime(), local, 'no answer yet: our own time');
  // Sent at 10.0 s, answered at 10.4 s; the server said 12:00:00 (so 12:00:00.0 to .999).
  clock.observe('Sun, 29 Nov 2026 12:00:00 GMT', local, local + 400);
  local += 400;
  const now = clock.now().getTime();
  t.true(Math.abs(now - at('2026-11-29T12:00:00.700Z')) <= 500, new Date(now).toISOString());
  local += 60_000;
  t.true(Math.abs(clock.now().getTime() - at('2026-11-29T12:01:00.700Z')) <= 500);
});

test('an answer without a usable Date changes nothing', (t) => {
  const clock = new ServerClock(() => 1000);
  clock.observe('Sun, 29 Nov 2026 12:00:00 GMT', 1000, 1000);
  const offset = clock.offsetMs;
  for (const header of [null, '', 'yesterday', 'Sun, 99 Foo 2026 99:99:99 GMT'])
    clock.observe(header, 1000, 1000);
  t.is(clock.offsetMs, offset);
});
