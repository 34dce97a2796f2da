import test from 'ava';
import type { ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { cp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { dirname, join } from 'node:path';
import { Updater } from 'tuf-js';
import { publishRelease } from '../src/publish/publish-release.js';
import {
  ext4Image,
  fakeDeltaMaker,
  newRepository,
  publishImage,
  sha256,
  tempDir,
} from './helpers/fixtures.js';
import { startServer } from './helpers/test-server.js';

// The repository over HTTP as `serve` answers it: Range, validators, caching, resume, and
// tuf-js as the device's client.

const IMMUTABLE = 'public, max-age=31536000, immutable';

// One repository and server for the Range tests: a 6 MiB target, big enough to cut mid-body.
const TARGET_BYTES = 6 << 20;
let shared: ReturnType<typeof makeServedTarget> | undefined;
let sharedDir: string | undefined;

async function makeServedTarget(t: ExecutionContext) {
  sharedDir = await tempDir(null, 'tuf-http');
  const repo = await newRepository(null);
  const content = randomBytes(TARGET_BYTES);
  const file = join(sharedDir, 'image.bin');
  await writeFile(file, content);
  await publishImage(repo, 'rpi4', '1.0.0', file);
  await symlink(join(repo, 'keys', 'timestamp.pem'), join(repo, 'targets', 'escape.pem'));
  const server = await startServer(t, repo, { keepOpen: true });
  const hash = sha256(content);
  return {
    repo,
    server,
    content,
    hash,
    url: `${server.url}/tuf/targets/rpi4/1.0.0/${hash}.rootfs.ext4`,
  };
}

function servedTarget(t: ExecutionContext) {
  shared ??= makeServedTarget(t);
  return shared;
}

test.after.always(async () => {
  const served = await shared?.catch(() => undefined);
  await served?.server.close();
  if (served) await rm(dirname(served.repo), { recursive: true, force: true });
  if (sharedDir) await rm(sharedDir, { recursive: true, force: true });
});

async function get(url: string, headers: Record<string, string> = {}, method = 'GET') {
  const response = await fetch(url, { headers, method });
  return {
    status: response.status,
    headers: response.headers,
    body: Buffer.from(await response.arrayBuffer()),
  };
}

/** A request with the path exactly as written (fetch would normalise '..' away). */
function rawGet(base: string, path: string): Promise<number> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    httpRequest({ hostname, port, path, method: 'GET' }, (response) => {
      response.resume();
      resolve(response.statusCode ?? 0);
    })
      .on('error', reject)
      .end();
  });
}

test('a target: 200 with a strong ETag, 206 for each range form, 416, and cache headers', async (t) => {
  const { server, content, hash, url } = await servedTarget(t);
  const size = content.length;
  const full = await get(url);
  t.is(full.status, 200);
  t.true(full.body.equals(content));
  t.is(full.headers.get('etag'), `"${hash}"`);
  t.is(full.headers.get('accept-ranges'), 'bytes');
  t.is(full.headers.get('cache-control'), IMMUTABLE);
  t.is(full.headers.get('content-length'), String(size));
  t.is(full.headers.get('content-type'), 'application/octet-stream');

  const forms: [string, number, number][] = [
    ['bytes=0-99', 0, 99],
    ['bytes=1000-', 1000, size - 1],
    ['bytes=-500', size - 500, size - 1],
    [`bytes=${size - 10}-${size + 100_000}`, size - 10, size - 1],
    [`bytes=-${size + 10}`, 0, size - 1],
  ];
  for (const [range, start, end] of forms) {
    const part = await get(url, { range });
    t.is(part.status, 206, range);
    t.is(part.headers.get('content-range'), `bytes ${start}-${end}/${size}`, range);
    t.is(part.headers.get('content-length'), String(end - start + 1), range);
    t.true(part.body.equals(content.subarray(start, end + 1)), range);
  }
  for (const range of [`bytes=${size}-`, `bytes=${size + 1000}-${size + 2000}`, 'bytes=-0']) {
    const refused = await get(url, { range });
    t.is(refused.status, 416, range);
    t.is(refused.headers.get('content-range'), `bytes */${size}`, range);
  }
  for (const range of ['bytes=5-2', 'bytes=0-1,5-6', 'lines=1-2', 'bytes=x-']) {
    const ignored = await get(url, { range });
    t.is(ignored.status, 200, range);
    t.is(ignored.body.length, size, range);
  }
  const head = await get(url, {}, 'HEAD');
  t.is(head.status, 200);
  t.is(head.headers.get('content-length'), String(size));
  t.is(head.body.length, 0);

  t.is((await get(`${server.url}/tuf/targets/rpi4/1.0.0/missing.rootfs.ext4`)).status, 404);
});

test('validators: If-None-Match gives 304, If-Range serves the range only for the same bytes', async (t) => {
  const { content, hash, url } = await servedTarget(t);
  const etag = `"${hash}"`;
  for (const value of [etag, `W/${etag}`, `"other", ${etag}`, '*']) {
    const cached = await get(url, { 'if-none-match': value });
    t.is(cached.status, 304, value);
    t.is(cached.body.length, 0);
    t.is(cached.headers.get('etag'), etag);
  }
  t.is((await get(url, { 'if-none-match': '"other"' })).status, 200);

  const same = await get(url, { range: 'bytes=100-199', 'if-range': etag });
  t.is(same.status, 206);
  t.true(same.body.equals(content.subarray(100, 200)));
  for (const stale of ['"0000"', `W/${etag}`, 'Tue, 01 Jan 2019 00:00:00 GMT']) {
    const whole = await get(url, { range: 'bytes=100-199', 'if-range': stale });
    t.is(whole.status, 200, stale);
    t.true(whole.body.equals(content), stale);
  }
  const lastModified = (await get(url)).headers.get('last-modified')!;
  t.is((await get(url, { range: 'bytes=0-9', 'if-range': lastModified })).status, 206);
  t.is(
    (await get(url, { range: `bytes=${content.length}-`, 'if-range': '"0000"' })).status,
    200,
    'a stale If-Range ignores even an unsatisfiable range',
  );
});

test('metadata: timestamp.json and root.json not cached, versioned files immutable, ETag for all', async (t) => {
  const { server } = await servedTarget(t);
  const base = `${server.url}/tuf/metadata`;
  for (const [file, cache] of [
    ['timestamp.json', 'no-cache'],
    ['root.json', 'no-cache'],
    ['1.root.json', IMMUTABLE],
    ['2.targets.json', IMMUTABLE],
    ['2.snapshot.json', IMMUTABLE],
  ] as const) {
    const answer = await get(`${base}/${file}`);
    t.is(answer.status, 200, file);
    t.is(answer.headers.get('cache-control'), cache, file);
    t.is(answer.headers.get('content-type'), 'application/json', file);
    const etag = answer.headers.get('etag')!;
    t.is(etag, `"${sha256(answer.body)}"`, file);
    t.is((await get(`${base}/${file}`, { 'if-none-match': etag })).status, 304, file);
  }
  t.is((await get(`${base}/9.root.json`)).status, 404);
});

test('paths out of the repository folders are refused', async (t) => {
  const { server } = await servedTarget(t);
  for (const path of [
    '/tuf/targets/../keys/timestamp.pem',
    '/tuf/targets/%2e%2e/keys/timestamp.pem',
    '/tuf/targets/..%2fkeys%2ftimestamp.pem',
    '/tuf/metadata/..%2f..%2fetc%2fpasswd',
    '/tuf/metadata/%2fetc%2fpasswd',
    '/tuf/targets/escape.pem',
    '/tuf/targets/rpi4%5c..%5c..%5ckeys',
    '/tuf/metadata/',
    '/tuf/targets/rpi4',
  ]) {
    t.is(await rawGet(server.url, path), 404, path);
  }
});

test('an interrupted download resumes with Range and If-Range to the same SHA-256', async (t) => {
  const { content, hash, url } = await servedTarget(t);
  const { hostname, port, pathname } = new URL(url);
  // The first attempt: the connection drops once 1 MiB has arrived.
  const received: Buffer[] = [];
  let etag = '';
  await new Promise<void>((resolve, reject) => {
    const request = httpRequest({ hostname, port, path: pathname }, (response) => {
      etag = String(response.headers.etag);
      let bytes = 0;
      response.on('data', (chunk: Buffer) => {
        received.push(chunk);
        bytes += chunk.length;
        if (bytes >= 1 << 20) {
          request.destroy();
          resolve();
        }
      });
      response.on('end', () => reject(new Error('the whole body arrived before the cut')));
    });
    request.on('error', () => undefined);
    request.end();
  });
  const have = Buffer.concat(received);
  t.true(have.length >= 1 << 20 && have.length < content.length);

  const rest = await get(url, { range: `bytes=${have.length}-`, 'if-range': etag });
  t.is(rest.status, 206);
  t.is(
    rest.headers.get('content-range'),
    `bytes ${have.length}-${content.length - 1}/${content.length}`,
  );
  t.is(sha256(Buffer.concat([have, rest.body])), hash);
});

test('tuf-js through the server finds, downloads and verifies a published image and its delta', async (t) => {
  const repo = await newRepository(t);
  const images = await tempDir(t, 'images');
  const v1 = await ext4Image(images, 'v1.img', { 'app.js': 'console.log(1)\n' });
  const v2 = await ext4Image(images, 'v2.img', { 'app.js': 'console.log(2)\n' });
  await publishRelease({
    repoDir: repo,
    board: 'rpi4',
    version: '1.0.0',
    imagePath: v1,
    makeDelta: fakeDeltaMaker,
  });
  await publishRelease({
    repoDir: repo,
    board: 'rpi4',
    version: '1.1.0',
    imagePath: v2,
    makeDelta: fakeDeltaMaker,
  });
  const server = await startServer(t, repo);

  const device = await tempDir(t, 'device');
  await cp(join(repo, 'metadata', '1.root.json'), join(device, 'root.json'));
  const updater = new Updater({
    metadataDir: device,
    metadataBaseUrl: `${server.url}/tuf/metadata`,
    targetDir: device,
    targetBaseUrl: `${server.url}/tuf/targets`,
    config: { fetchRetry: 0 },
  });
  await updater.refresh();
  const image = await updater.getTargetInfo('rpi4/1.1.0/rootfs.ext4');
  t.truthy(image);
  t.like(image!.custom, { board: 'rpi4', version: '1.1.0', kind: 'image' });
  const downloaded = await updater.downloadTarget(image!, join(device, 'image'));
  // Hashes, not t.deepEqual: ava formats every byte of a 1 MiB Buffer to compare it.
  t.is(sha256(await readFile(downloaded)), sha256(await readFile(v2)));

  const delta = await updater.getTargetInfo('rpi4/1.1.0/rootfs.from-1.0.0.bsdiff');
  t.like(delta!.custom, {
    kind: 'delta',
    sourceVersion: '1.0.0',
    sourceSha256: sha256(await readFile(v1)),
  });
  const deltaFile = await updater.downloadTarget(delta!, join(device, 'delta'));
  t.regex(await readFile(deltaFile, 'utf8'), /^fake delta /);
});
