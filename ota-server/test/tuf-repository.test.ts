import { canonicalize } from '@tufjs/canonical-json';
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { createHash, createPublicKey, verify } from 'node:crypto';
import { chmod, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import {
  addTargets,
  formatExpires,
  initRepository,
  loadPrivateKey,
  refreshTimestamp,
  renewRoot,
  repositoryStatus,
  rotateKeys,
  TufRepositoryError,
} from '../src/tuf/index.js';
import type { RoleName } from '../src/tuf/index.js';

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
