import test, { type ExecutionContext } from 'ava';
import { createHash, createPublicKey, verify } from 'node:crypto';
import { chmod, cp, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative, resolve, sep } from 'node:path';
import { canonicalize } from '@tufjs/canonical-json';
import { Updater } from 'tuf-js';
import {
  TufRepositoryError,
  addTargets,
  formatExpires,
  generateEd25519KeyPair,
  initRepository,
  loadPrivateKey,
  refreshTimestamp,
  renewRoot,
  repositoryStatus,
  rotateKeys,
  type RoleName,
} from '../src/tuf/index.js';
import { serializeMetadata, signMetadata, type TimestampSigned } from '../src/tuf/metadata.js';

// The repository on disk, checked without tuf-js: file names, modes, canonical JSON, and
// Ed25519 signatures verified directly with node:crypto.

interface Envelope {
  signatures: { keyid: string; sig: string }[];
  signed: Record<string, unknown> & { _type: string; version: number; expires: string };
}

interface RootJson {
  keys: Record<string, { keytype: string; scheme: string; keyval: { public: string } }>;
  roles: Record<RoleName, { keyids: string[]; threshold: number }>;
  consistent_snapshot: boolean;
}

async function tempDir(t: ExecutionContext, label: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `tuf-${label}-`));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function newRepository(t: ExecutionContext): Promise<{ repo: string; files: string }> {
  const repo = await tempDir(t, 'repo');
  await initRepository(repo);
  return { repo, files: await tempDir(t, 'files') };
}

async function file(dir: string, name: string, content: string): Promise<string> {
  await writeFile(join(dir, name), content);
  return join(dir, name);
}

async function readEnvelope(path: string): Promise<Envelope> {
  return JSON.parse(await readFile(path, 'utf8')) as Envelope;
}

/** Every file under `dir` with its bytes: "the repository as it was". */
async function snapshotTree(dir: string): Promise<Record<string, string>> {
  const tree: Record<string, string> = {};
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    tree[relative(dir, path)] = (await readFile(path)).toString('base64');
  }
  return tree;
}

const sha256 = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex');

test('init lays out keys, version-named metadata and an empty targets folder', async (t) => {
  const { repo } = await newRepository(t);
  t.deepEqual((await readdir(join(repo, 'keys'))).sort(), [
    'root.pem',
    'snapshot.pem',
    'targets.pem',
    'timestamp.pem',
  ]);
  t.is((await stat(join(repo, 'keys'))).mode & 0o777, 0o700);
  for (const key of await readdir(join(repo, 'keys'))) {
    t.is((await stat(join(repo, 'keys', key))).mode & 0o777, 0o600, key);
  }
  t.deepEqual((await readdir(join(repo, 'metadata'))).sort(), [
    '1.root.json',
    '1.snapshot.json',
    '1.targets.json',
    'root.json',
    'timestamp.json',
  ]);
  t.deepEqual(await readdir(join(repo, 'targets')), []);
  t.deepEqual(
    await readFile(join(repo, 'metadata', 'root.json')),
    await readFile(join(repo, 'metadata', '1.root.json')),
  );
  await t.throwsAsync(initRepository(repo), { message: /not empty/ });
});

test('metadata is canonical JSON, Ed25519-signed, with spec key IDs and expires to the second', async (t) => {
  const { repo, files } = await newRepository(t);
  await addTargets(repo, [
    { kind: 'image', board: 'rpi4', version: '1.0.0', path: await file(files, 'a', 'image') },
  ]);
  const metadata = join(repo, 'metadata');
  const root = (await readEnvelope(join(metadata, '1.root.json'))).signed as unknown as RootJson;
  t.true(root.consistent_snapshot);
  for (const [keyId, key] of Object.entries(root.keys)) {
    t.is(key.keytype, 'ed25519');
    t.is(key.scheme, 'ed25519');
    t.regex(key.keyval.public, /^[0-9a-f]{64}$/);
    t.is(keyId, sha256(canonicalize(key)));
  }
  for (const role of ['root', 'targets', 'snapshot', 'timestamp'] as const) {
    const keyPair = await loadPrivateKey(join(repo, 'keys', `${role}.pem`));
    t.deepEqual(root.roles[role], { keyids: [keyPair.keyId], threshold: 1 });
  }
  const names = (await readdir(metadata)).filter((name) => name.endsWith('.json'));
  t.deepEqual(names.sort(), [
    '1.root.json',
    '1.snapshot.json',
    '1.targets.json',
    '2.snapshot.json',
    '2.targets.json',
    'root.json',
    'timestamp.json',
  ]);
  for (const name of names) {
    const bytes = await readFile(join(metadata, name));
    const envelope = JSON.parse(bytes.toString()) as Envelope;
    t.is(bytes.toString(), canonicalize(envelope), `${name} is canonical JSON`);
    t.regex(envelope.signed.expires, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/, name);
    t.is(envelope.signatures.length, 1);
    const [signature] = envelope.signatures;
    const role = envelope.signed._type as RoleName;
    t.deepEqual(root.roles[role].keyids, [signature!.keyid], name);
    const publicKey = createPublicKey({
      key: {
        kty: 'OKP',
        crv: 'Ed25519',
        x: Buffer.from(root.keys[signature!.keyid]!.keyval.public, 'hex').toString('base64url'),
      },
      format: 'jwk',
    });
    const signedBytes = Buffer.from(canonicalize(envelope.signed));
    t.true(verify(null, signedBytes, publicKey, Buffer.from(signature!.sig, 'hex')), name);
  }
  // The pitfall this guards against: Date's own ISO form carries milliseconds.
  t.regex(new Date(0).toISOString(), /\.000Z$/);
  t.is(formatExpires(new Date(Date.UTC(2030, 0, 2, 3, 4, 5, 678))), '2030-01-02T03:04:05Z');
});

test('targets are stored as <sha256>.<name>, with custom fields for images and deltas', async (t) => {
  const { repo, files } = await newRepository(t);
  const result = await addTargets(repo, [
    { kind: 'image', board: 'rpi4', version: '1.0.0', path: await file(files, 'v1', 'one') },
    { kind: 'image', board: 'rpi4', version: '1.1.0', path: await file(files, 'v2', 'two') },
    {
      kind: 'delta',
      board: 'rpi4',
      version: '1.1.0',
      sourceVersion: '1.0.0',
      path: await file(files, 'd', 'patch'),
    },
  ]);
  t.deepEqual(result.added.sort(), [
    'rpi4/1.0.0/rootfs.ext4',
    'rpi4/1.1.0/rootfs.ext4',
    'rpi4/1.1.0/rootfs.from-1.0.0.bsdiff',
  ]);
  const targets = (await readEnvelope(join(repo, 'metadata', '2.targets.json'))).signed
    .targets as Record<string, unknown>;
  t.deepEqual(targets['rpi4/1.1.0/rootfs.from-1.0.0.bsdiff'], {
    length: 5,
    hashes: { sha256: sha256('patch') },
    custom: {
      board: 'rpi4',
      version: '1.1.0',
      kind: 'delta',
      sourceVersion: '1.0.0',
      sourceSha256: sha256('one'),
    },
  });
  t.deepEqual(targets['rpi4/1.0.0/rootfs.ext4'], {
    length: 3,
    hashes: { sha256: sha256('one') },
    custom: { board: 'rpi4', version: '1.0.0', kind: 'image' },
  });
  t.is(
    await readFile(
      join(repo, 'targets', 'rpi4', '1.1.0', `${sha256('patch')}.rootfs.from-1.0.0.bsdiff`),
      'utf8',
    ),
    'patch',
  );
  // The same bytes again change nothing; other bytes under a published name are refused.
  const again = await addTargets(repo, [
    { kind: 'image', board: 'rpi4', version: '1.0.0', path: join(files, 'v1') },
  ]);
  t.deepEqual(again, { added: [], versions: { targets: 2, snapshot: 2, timestamp: 2 } });
  const before = await snapshotTree(repo);
  await t.throwsAsync(
    addTargets(repo, [{ kind: 'image', board: 'rpi4', version: '1.0.0', path: join(files, 'v2') }]),
    { instanceOf: TufRepositoryError, message: /already published with sha256/ },
  );
  await t.throwsAsync(
    addTargets(repo, [
      { kind: 'image', board: 'rpi4', version: '2.0.0', path: await file(files, 'v3', 'three') },
      {
        kind: 'delta',
        board: 'rpi4',
        version: '2.0.0',
        sourceVersion: '1.0.0',
        sourceSha256: sha256('not one'),
        path: join(files, 'd'),
      },
    ]),
    { message: /sourceSha256 \w+ is not that image's/ },
  );
  await t.throwsAsync(
    addTargets(repo, [
      {
        kind: 'delta',
        board: 'rpi4',
        version: '3.0.0',
        sourceVersion: '1.0.0',
        path: join(files, 'd'),
      },
    ]),
    { message: /rpi4\/3.0.0\/rootfs.ext4 is not published/ },
  );
  await t.throwsAsync(
    addTargets(repo, [{ kind: 'image', board: '../etc', version: '1', path: join(files, 'd') }]),
    { message: /board '..\/etc'/ },
  );
  t.deepEqual(await snapshotTree(repo), before, 'refused calls leave every file as it was');
});

test('a missing, exposed or wrong key file is one clear error and changes nothing', async (t) => {
  const { repo, files } = await newRepository(t);
  const image = {
    kind: 'image',
    board: 'rpi4',
    version: '1.0.0',
    path: await file(files, 'v1', 'one'),
  } as const;
  const before = await snapshotTree(repo);

  const missing = join(files, 'nowhere.pem');
  await t.throwsAsync(addTargets(repo, [image], { keyPaths: { targets: missing } }), {
    message: `private key file not found: ${missing}`,
  });
  const snapshotKey = join(repo, 'keys', 'snapshot.pem');
  await t.throwsAsync(addTargets(repo, [image], { keyPaths: { targets: snapshotKey } }), {
    message:
      /snapshot.pem: key [0-9a-f]{64} is not a targets key in root version 1 \(its targets keys: [0-9a-f]{64}\)/,
  });
  await chmod(join(repo, 'keys', 'timestamp.pem'), 0o644);
  await t.throwsAsync(addTargets(repo, [image]), {
    message:
      /refusing private key .*timestamp.pem: group or others may access it \(mode 0644\); run chmod 600/,
  });
  await t.throwsAsync(refreshTimestamp(repo), { message: /mode 0644/ });
  await t.throwsAsync(
    rotateKeys(repo, 'targets', { rootKeyPath: join(repo, 'keys', 'targets.pem') }),
    { message: /is not a root key/ },
  );
  await chmod(join(repo, 'keys', 'timestamp.pem'), 0o600);
  t.deepEqual(await snapshotTree(repo), before);
  t.deepEqual((await addTargets(repo, [image])).added, ['rpi4/1.0.0/rootfs.ext4']);
});

test('refresh signs a new timestamp, and snapshot and targets when near expiry', async (t) => {
  const { repo } = await newRepository(t);
  const day = 24 * 3600 * 1000;
  t.deepEqual(await refreshTimestamp(repo), {
    versions: { targets: 1, snapshot: 1, timestamp: 2 },
    resigned: ['timestamp'],
  });
  // Five days on, a seven-day snapshot has less than a third of its life left.
  t.deepEqual(await refreshTimestamp(repo, { now: new Date(Date.now() + 5 * day) }), {
    versions: { targets: 1, snapshot: 2, timestamp: 3 },
    resigned: ['snapshot', 'timestamp'],
  });
  // A crashed writer's temporary file is cleared by the next operation.
  const leftover = join(repo, 'metadata', '.timestamp.json.tmp-999999999-0123abcd');
  await writeFile(leftover, '{');
  const now = new Date(Date.now() + 70 * day);
  t.deepEqual(await refreshTimestamp(repo, { now }), {
    versions: { targets: 2, snapshot: 3, timestamp: 4 },
    resigned: ['targets', 'snapshot', 'timestamp'],
  });
  const targets = await readEnvelope(join(repo, 'metadata', '2.targets.json'));
  t.is(targets.signed.expires, formatExpires(new Date(now.getTime() + 90 * day)));
  await t.throwsAsync(stat(leftover), { code: 'ENOENT' });
  t.deepEqual((await repositoryStatus(repo, { now })).problems, []);
});

test('status reports versions, expiry warnings and what a client would reject', async (t) => {
  const { repo, files } = await newRepository(t);
  await addTargets(repo, [
    { kind: 'image', board: 'rpi4', version: '1.0.0', path: await file(files, 'v1', 'one') },
  ]);
  const status = await repositoryStatus(repo);
  t.like(status.roles, {
    root: { version: 1 },
    targets: { version: 2 },
    snapshot: { version: 2 },
    timestamp: { version: 2 },
  });
  t.is(status.targetsCount, 1);
  t.deepEqual(status.warnings, []);
  t.deepEqual(status.problems, []);

  const later = await repositoryStatus(repo, {
    now: new Date(Date.now() + 355 * 24 * 3600 * 1000),
  });
  t.regex(
    later.warnings.join('\n'),
    /root version 1 expires at .* \(in 10\.0 days\): sign a new root/,
  );
  t.regex(later.warnings.join('\n'), /timestamp version 2 expired at/);
  const renewed = await renewRoot(repo, {
    rootKeyPath: join(repo, 'keys', 'root.pem'),
    now: new Date(Date.now() + 355 * 24 * 3600 * 1000),
  });
  t.is(renewed.rootVersion, 2);
  const afterRenewal = await repositoryStatus(repo, {
    now: new Date(Date.now() + 355 * 24 * 3600 * 1000),
  });
  t.notRegex(afterRenewal.warnings.join('\n'), /root/);
  t.deepEqual(afterRenewal.problems, []);

  await writeFile(join(repo, '.lock'), '999999999\n');
  t.regex((await repositoryStatus(repo)).warnings.join('\n'), /lock left by process 999999999/);
  await rm(join(repo, '.lock'));

  // A snapshot file that no longer matches what timestamp recorded.
  const snapshotFile = join(repo, 'metadata', '2.snapshot.json');
  await writeFile(snapshotFile, `${await readFile(snapshotFile, 'utf8')} `);
  t.regex((await repositoryStatus(repo)).problems.join('\n'), /2.snapshot.json: Expected length/);
});

// ---- the client side ----

// These tests play a device: tuf-js's Updater against the repository served over HTTP.

interface Served {
  baseUrl: string;
  /** The folder served (a repository, or a copy of an older state of one). */
  root: string;
  /** Rewrites a response body before it is sent (a misbehaving server or a mirror). */
  tweak?: (urlPath: string, body: Buffer) => Buffer;
}

/** A minimal static server on 127.0.0.1: /metadata/* and /targets/* from `served.root`. */
async function serve(t: ExecutionContext, root: string): Promise<Served> {
  const served: Served = { baseUrl: '', root };
  const server = createServer((request, response) => {
    const urlPath = decodeURIComponent(new URL(request.url ?? '/', 'http://x').pathname);
    const base = resolve(served.root);
    const file = resolve(base, `.${urlPath}`);
    if (!file.startsWith(base + sep)) {
      response.writeHead(403).end();
      return;
    }
    readFile(file).then(
      (body) => {
        const sent = served.tweak ? served.tweak(urlPath, body) : body;
        response.writeHead(200, { 'content-type': 'application/octet-stream' }).end(sent);
      },
      () => response.writeHead(404).end(),
    );
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  t.teardown(() => new Promise<void>((done) => server.close(() => done())));
  served.baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return served;
}

/** A device's TUF client state: its trusted root.json, and where it downloads to. */
async function newDevice(t: ExecutionContext, trustedRoot: string): Promise<string> {
  const device = await tempDir(t, 'device');
  await cp(trustedRoot, join(device, 'root.json'));
  return device;
}

function updater(device: string, served: Served): Updater {
  return new Updater({
    metadataDir: device,
    metadataBaseUrl: `${served.baseUrl}/metadata`,
    targetDir: device,
    targetBaseUrl: `${served.baseUrl}/targets`,
    config: { fetchRetry: 0 },
  });
}

async function writeImage(dir: string, name: string, content: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, content);
  return path;
}

/** A repository with images 1.0.0 and 2.0.0 of board rpi4 and the delta between them. */
async function publishedRepository(t: ExecutionContext): Promise<{ repo: string; files: string }> {
  const repo = await tempDir(t, 'repo');
  const files = await tempDir(t, 'files');
  await initRepository(repo);
  await addTargets(repo, [
    {
      kind: 'image',
      board: 'rpi4',
      version: '1.0.0',
      path: await writeImage(files, 'v1', 'image one'),
    },
  ]);
  await addTargets(repo, [
    {
      kind: 'image',
      board: 'rpi4',
      version: '2.0.0',
      path: await writeImage(files, 'v2', 'image two'),
    },
    {
      kind: 'delta',
      board: 'rpi4',
      version: '2.0.0',
      sourceVersion: '1.0.0',
      path: await writeImage(files, 'd12', 'delta one to two'),
    },
  ]);
  return { repo, files };
}

const DELTA = 'rpi4/2.0.0/rootfs.from-1.0.0.bsdiff';

test('a device finds an update, sees its custom fields, downloads and verifies it', async (t) => {
  const { repo } = await publishedRepository(t);
  const served = await serve(t, repo);
  const device = await newDevice(t, join(repo, 'metadata', 'root.json'));
  const client = updater(device, served);
  await client.refresh();

  const delta = await client.getTargetInfo(DELTA);
  t.truthy(delta);
  t.deepEqual(delta?.custom, {
    board: 'rpi4',
    version: '2.0.0',
    kind: 'delta',
    sourceVersion: '1.0.0',
    sourceSha256: sha256('image one'),
  });
  const image = await client.getTargetInfo('rpi4/2.0.0/rootfs.ext4');
  t.like(image?.custom, { board: 'rpi4', version: '2.0.0', kind: 'image' });
  const path = await client.downloadTarget(delta!, join(device, 'delta.bsdiff'));
  const downloaded = await readFile(path);
  t.is(downloaded.toString(), 'delta one to two');
  t.is(delta?.hashes.sha256, sha256(downloaded));
  t.is(await client.getTargetInfo('rpi4/3.0.0/rootfs.ext4'), undefined);
});

test('a tampered target file is rejected', async (t) => {
  const { repo } = await publishedRepository(t);
  const stored = join(
    repo,
    'targets',
    'rpi4',
    '2.0.0',
    `${sha256('delta one to two')}.rootfs.from-1.0.0.bsdiff`,
  );
  await writeFile(stored, 'delta one to TWO');
  const served = await serve(t, repo);
  const client = updater(await newDevice(t, join(repo, 'metadata', 'root.json')), served);
  const delta = await client.getTargetInfo(DELTA);
  await t.throwsAsync(client.downloadTarget(delta!), { message: /Expected hash/ });
});

test('a server that sends more bytes than signed is rejected', async (t) => {
  const { repo } = await publishedRepository(t);
  const served = await serve(t, repo);
  served.tweak = (urlPath, body) =>
    urlPath.startsWith('/targets/') ? Buffer.concat([body, Buffer.from('+')]) : body;
  const client = updater(await newDevice(t, join(repo, 'metadata', 'root.json')), served);
  const delta = await client.getTargetInfo(DELTA);
  await t.throwsAsync(client.downloadTarget(delta!), { message: /Max length reached/ });
});

test('an expired timestamp is rejected', async (t) => {
  const { repo } = await publishedRepository(t);
  await refreshTimestamp(repo, { now: new Date(Date.now() - 2 * 24 * 3600 * 1000) });
  const served = await serve(t, repo);
  const client = updater(await newDevice(t, join(repo, 'metadata', 'root.json')), served);
  await t.throwsAsync(client.refresh(), { message: /timestamp.json is expired/ });
});

test('older metadata replayed to a device that saw newer is rejected (rollback)', async (t) => {
  const { repo, files } = await publishedRepository(t);
  const older = await tempDir(t, 'older');
  await cp(repo, older, { recursive: true });
  await addTargets(repo, [
    {
      kind: 'image',
      board: 'rpi4',
      version: '3.0.0',
      path: await writeImage(files, 'v3', 'image three'),
    },
  ]);
  const served = await serve(t, repo);
  const device = await newDevice(t, join(repo, 'metadata', 'root.json'));
  await updater(device, served).refresh();

  served.root = older;
  const replayed = updater(device, served);
  await t.throwsAsync(replayed.refresh(), {
    message: /New timestamp version 3 is less than current version 4/,
  });
});

test('a snapshot that does not match the targets file served is rejected (mixed versions)', async (t) => {
  const { repo } = await publishedRepository(t);
  const metadata = join(repo, 'metadata');
  // The snapshot names targets version 3; the server hands out version 2's bytes under that name.
  await cp(join(metadata, '2.targets.json'), join(metadata, '3.targets.json'));
  const served = await serve(t, repo);
  const client = updater(await newDevice(t, join(metadata, 'root.json')), served);
  await t.throwsAsync(client.refresh(), { message: /Unable to load targets.*(Expected|Version)/ });
});

test('metadata signed by a key that root does not list is rejected', async (t) => {
  const { repo } = await publishedRepository(t);
  const file = join(repo, 'metadata', 'timestamp.json');
  const current = JSON.parse(await readFile(file, 'utf8')) as { signed: TimestampSigned };
  const forged = signMetadata({ ...current.signed, version: current.signed.version + 1 }, [
    generateEd25519KeyPair(),
  ]);
  await writeFile(file, serializeMetadata(forged));
  const served = await serve(t, repo);
  const client = updater(await newDevice(t, join(repo, 'metadata', 'root.json')), served);
  await t.throwsAsync(client.refresh(), { message: /timestamp was signed by 0\/1 keys/ });
});

test('a device that trusts root 1 follows root and key rotations', async (t) => {
  const { repo, files } = await publishedRepository(t);
  const keys = await tempDir(t, 'offline');
  const device = await newDevice(t, join(repo, 'metadata', '1.root.json'));
  const served = await serve(t, repo);
  await updater(device, served).refresh();

  const firstRoot = join(repo, 'keys', 'root.pem');
  const secondRoot = join(keys, 'root-2.pem');
  t.like(await rotateKeys(repo, 'root', { rootKeyPath: firstRoot, newRootKeyPath: secondRoot }), {
    rootVersion: 2,
  });
  t.like(await rotateKeys(repo, 'targets', { rootKeyPath: secondRoot }), { rootVersion: 4 });
  t.like(await rotateKeys(repo, 'snapshot', { rootKeyPath: secondRoot }), { rootVersion: 6 });
  t.like(await rotateKeys(repo, 'timestamp', { rootKeyPath: secondRoot }), { rootVersion: 8 });
  await addTargets(repo, [
    {
      kind: 'image',
      board: 'rpi4',
      version: '3.0.0',
      path: await writeImage(files, 'v3', 'image three'),
    },
  ]);
  // The first root key signs nothing any more.
  await t.throwsAsync(rotateKeys(repo, 'timestamp', { rootKeyPath: firstRoot }), {
    message: /is not a root key in root version 8/,
  });

  const client = updater(device, served);
  const target = await client.getTargetInfo('rpi4/3.0.0/rootfs.ext4');
  t.truthy(target);
  t.is((await readFile(await client.downloadTarget(target!))).toString(), 'image three');
  const trusted = JSON.parse(await readFile(join(device, 'root.json'), 'utf8')) as {
    signed: { version: number };
  };
  t.is(trusted.signed.version, 8);
  t.deepEqual((await repositoryStatus(repo)).problems, []);
});

test('two addTargets at once both land and the repository stays valid', async (t) => {
  const repo = await tempDir(t, 'repo');
  const files = await tempDir(t, 'files');
  await initRepository(repo);
  const [a, b] = await Promise.all([
    addTargets(repo, [
      { kind: 'image', board: 'rpi4', version: '1.0.0', path: await writeImage(files, 'a', 'a') },
    ]),
    addTargets(repo, [
      { kind: 'image', board: 'qemu', version: '1.0.0', path: await writeImage(files, 'b', 'b') },
    ]),
  ]);
  t.deepEqual(new Set([a.versions.targets, b.versions.targets]), new Set([2, 3]));
  const served = await serve(t, repo);
  const client = updater(await newDevice(t, join(repo, 'metadata', 'root.json')), served);
  t.truthy(await client.getTargetInfo('rpi4/1.0.0/rootfs.ext4'));
  t.truthy(await client.getTargetInfo('qemu/1.0.0/rootfs.ext4'));
  t.deepEqual((await repositoryStatus(repo)).problems, []);
});

test('a crash midway through publishing leaves a repository that devices accept', async (t) => {
  const { repo, files } = await publishedRepository(t);
  const served = await serve(t, repo);
  const v3 = await writeImage(files, 'v3', 'image three');
  const image3 = { kind: 'image', board: 'rpi4', version: '3.0.0', path: v3 } as const;
  for (const crashAt of ['4.targets.json', '4.snapshot.json', 'timestamp.json']) {
    const crash = (file: string): void => {
      if (file === crashAt) throw new Error(`simulated crash before ${file}`);
    };
    await t.throwsAsync(addTargets(repo, [image3], { beforeWrite: crash }), {
      message: /simulated crash/,
    });
    const client = updater(await newDevice(t, join(repo, 'metadata', 'root.json')), served);
    await client.refresh();
    t.is(
      await client.getTargetInfo('rpi4/3.0.0/rootfs.ext4'),
      undefined,
      `crash before ${crashAt}`,
    );
  }
  // A real crash also leaves its lock behind: the next run takes it over, and never
  // rewrites the version files the crashed runs left.
  const orphan = await readFile(join(repo, 'metadata', '4.targets.json'));
  await writeFile(join(repo, '.lock'), '999999999\n');
  const warnings: string[] = [];
  const result = await addTargets(repo, [image3], { warn: (message) => warnings.push(message) });
  t.regex(warnings.join('\n'), /taking over the lock of process 999999999/);
  t.true(result.versions.targets > 4);
  t.deepEqual(await readFile(join(repo, 'metadata', '4.targets.json')), orphan);
  const client = updater(await newDevice(t, join(repo, 'metadata', 'root.json')), served);
  t.truthy(await client.getTargetInfo('rpi4/3.0.0/rootfs.ext4'));
});

test('a key rotation interrupted at any step leaves a repository that devices accept', async (t) => {
  const { repo } = await publishedRepository(t);
  const served = await serve(t, repo);
  const rootKeyPath = join(repo, 'keys', 'root.pem');
  // Rotating timestamp writes N+1.root.json and root.json (old and new key listed),
  // timestamp.json, then N+2.root.json and root.json (new key only): crash before each.
  const crashedBefore: string[] = [];
  for (let crashAt = 1; crashAt <= 5; crashAt++) {
    let writes = 0;
    const crash = (file: string): void => {
      if (++writes === crashAt) {
        crashedBefore.push(file);
        throw new Error(`simulated crash before ${file}`);
      }
    };
    await t.throwsAsync(rotateKeys(repo, 'timestamp', { rootKeyPath, beforeWrite: crash }), {
      message: /simulated crash/,
    });
    const device = await newDevice(t, join(repo, 'metadata', '1.root.json'));
    t.truthy(await updater(device, served).getTargetInfo(DELTA), `crash before ${crashAt}`);
    t.deepEqual((await repositoryStatus(repo)).problems, [], `crash before ${crashAt}`);
  }
  t.deepEqual(
    crashedBefore.map((name) => name.replace(/^\d+\./, 'N.')),
    ['N.root.json', 'root.json', 'timestamp.json', 'N.root.json', 'root.json'],
  );
  const done = await rotateKeys(repo, 'timestamp', { rootKeyPath });
  const client = updater(await newDevice(t, join(repo, 'metadata', '1.root.json')), served);
  t.truthy(await client.getTargetInfo(DELTA));
  const root = JSON.parse(await readFile(join(repo, 'metadata', 'root.json'), 'utf8')) as {
    signed: { version: number; roles: { timestamp: { keyids: string[] } } };
  };
  t.is(root.signed.version, done.rootVersion);
  t.deepEqual(root.signed.roles.timestamp.keyids, [done.keyId]);
});
