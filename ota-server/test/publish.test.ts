import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import {
  appendFile,
  copyFile,
  cp,
  mkdir,
  readFile,
  readdir,
  rm,
  symlink,
  truncate,
  writeFile,
} from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import { DEVICE_API_PATHS, parseAppIndex, targetFileRelativePath } from '@edge/formats';
import { runCli } from '../src/cli.js';
import type { DeltaMaker } from '../src/publish/delta-maker.js';
import { PublishError, type PublishErrorCode } from '../src/publish/errors.js';
import { publishAppRelease } from '../src/publish/publish-app.js';
import {
  publishRelease,
  type PublishOptions,
  type PublishProgress,
} from '../src/publish/publish-release.js';
import { publishedImages } from '../src/repository/published-images.js';
import { loadRepositoryState } from '../src/tuf/repository-state.js';
import { SimulatedDevice } from './helpers/device.js';
import {
  ext4Image,
  fakeDeltaMaker,
  newRepository,
  sha256,
  tempDir,
  treeDigest,
} from './helpers/fixtures.js';
import { FLEET_TOKEN, startServer } from './helpers/test-server.js';

// publish: checks first, deltas from the newest releases, one addTargets call; every refusal
// leaves the repository byte for byte as it was.

// mke2fs runs once per release for the file; each test gets its own copy (some cut or grow it).
let pristineDir: Promise<string> | undefined;
const pristine = new Map<string, Promise<string>>();
test.after.always(async () => {
  if (pristineDir) await rm(await pristineDir, { recursive: true, force: true });
  const repo = await released?.catch(() => undefined);
  if (repo) await rm(dirname(repo), { recursive: true, force: true });
});

function pristineImage(version: string): Promise<string> {
  let made = pristine.get(version);
  if (!made) {
    made = (async () =>
      ext4Image(await (pristineDir ??= tempDir(null, 'pristine')), `${version}.img`, {
        'version.txt': `${version}\n`,
      }))();
    pristine.set(version, made);
  }
  return made;
}

/** 1.0.0 and 1.1.0 published, made once: each refusal test works on its own copy. */
let released: Promise<string> | undefined;
function releasedRepository(): Promise<string> {
  released ??= (async () => {
    const repo = await newRepository(null);
    for (const version of ['1.0.0', '1.1.0']) {
      await publishRelease({
        repoDir: repo,
        board: 'rpi4',
        version,
        imagePath: await pristineImage(version),
        makeDelta: fakeDeltaMaker,
      });
    }
    return repo;
  })();
  return released;
}

/** A new repository, or a copy of `copyOf`, with helpers that make images and publish. */
async function setUp(t: ExecutionContext, copyOf?: string) {
  let repo: string;
  if (copyOf) {
    repo = join(await tempDir(t, 'repo'), 'repo');
    await cp(copyOf, repo, { recursive: true });
  } else {
    repo = await newRepository(t);
  }
  const images = await tempDir(t, 'images');
  const image = async (version: string) => {
    const path = join(images, `${version}.img`);
    await copyFile(await pristineImage(version), path);
    return path;
  };
  const publish = (version: string, imagePath: string, extra: Partial<PublishOptions> = {}) =>
    publishRelease({
      repoDir: repo,
      board: 'rpi4',
      version,
      imagePath,
      makeDelta: fakeDeltaMaker,
      ...extra,
    });
  return { repo, images, image, publish };
}

test('the first release has no delta; later ones have deltas from the newest N releases', async (t) => {
  const { repo, image, publish } = await setUp(t);
  const first = await publish('1.0.0', await image('1.0.0'));
  t.deepEqual(first.added, ['rpi4/1.0.0/rootfs.ext4']);
  t.deepEqual(first.deltaTargets, []);
  await publish('1.1.0', await image('1.1.0'));
  await publish('1.2.0-rc.1', await image('1.2.0-rc.1'));

  const events: PublishProgress[] = [];
  const v2 = await image('1.2.0');
  const result = await publish('1.2.0', v2, { onProgress: (event) => events.push(event) });
  t.deepEqual(result.added.sort(), [
    'rpi4/1.2.0/rootfs.ext4',
    'rpi4/1.2.0/rootfs.from-1.1.0.bsdiff',
    'rpi4/1.2.0/rootfs.from-1.2.0-rc.1.bsdiff',
  ]);
  t.like(events[0], { step: 'checked', previous: ['1.2.0-rc.1', '1.1.0'] });
  t.true(events.some((event) => event.step === 'delta' && event.progress.bytesDone === 2));
  t.is(events.at(-1)?.step, 'signing');

  // Each delta was made from the right published image to the new one.
  const byVersion = new Map(
    (await publishedImages(repo, 'rpi4')).map((entry) => [entry.version, entry]),
  );
  const deltaFile = async (source: string) => {
    const folder = join(repo, 'targets', 'rpi4', '1.2.0');
    const name = (await readdir(folder)).find((file) =>
      file.endsWith(`.rootfs.from-${source}.bsdiff`),
    )!;
    return readFile(join(folder, name), 'utf8');
  };
  t.is(
    await deltaFile('1.1.0'),
    `fake delta ${byVersion.get('1.1.0')!.sha256} -> ${sha256(await readFile(v2))}\n`,
  );
  t.is(byVersion.get('1.2.0')!.length, (await readFile(v2)).length);

  const one = await publish('1.3.0', await image('1.3.0'), { deltaCount: 1 });
  t.deepEqual(one.deltaTargets, ['rpi4/1.3.0/rootfs.from-1.2.0.bsdiff']);
  const none = await publish('1.4.0', await image('1.4.0'), { deltaCount: 0 });
  t.deepEqual(none.deltaTargets, []);
  // The versions the fleet runs, whatever their age.
  const chosen = await publish('1.5.0', await image('1.5.0'), { deltaFrom: ['1.0.0', '1.3.0'] });
  t.deepEqual(chosen.deltaTargets.sort(), [
    'rpi4/1.5.0/rootfs.from-1.0.0.bsdiff',
    'rpi4/1.5.0/rootfs.from-1.3.0.bsdiff',
  ]);
});

const refusals: [
  string,
  PublishError['code'],
  (ctx: Awaited<ReturnType<typeof setUp>>) => Promise<unknown>,
][] = [
  [
    'not an ext4 image',
    'IMAGE_INVALID',
    async ({ images, publish }) => {
      const file = join(images, 'text.img');
      await writeFile(file, 'x'.repeat(4096));
      return publish('2.0.0', file);
    },
  ],
  [
    'a truncated image',
    'IMAGE_INVALID',
    async ({ image, publish }) => {
      const file = await image('2.0.0');
      await truncate(file, 512 * 1024);
      return publish('2.0.0', file);
    },
  ],
  [
    'bytes past the filesystem',
    'IMAGE_INVALID',
    async ({ image, publish }) => {
      const file = await image('2.0.0');
      await appendFile(file, Buffer.alloc(4096));
      return publish('2.0.0', file);
    },
  ],
  [
    'a missing file',
    'IMAGE_INVALID',
    ({ images, publish }) => publish('2.0.0', join(images, 'none.img')),
  ],
  [
    'a board name with a slash',
    'BOARD_INVALID',
    async ({ image, publish }) => publish('2.0.0', await image('2.0.0'), { board: '../rpi4' }),
  ],
  [
    'a board name with a space',
    'BOARD_INVALID',
    async ({ image, publish }) => publish('2.0.0', await image('2.0.0'), { board: 'rpi 4' }),
  ],
  [
    'a version that is not semver',
    'VERSION_INVALID',
    async ({ image, publish }) => publish('2.0', await image('2.0')),
  ],
  [
    'a version with a leading v',
    'VERSION_INVALID',
    async ({ image, publish }) => publish('v2.0.0', await image('v2')),
  ],
  [
    'the same version again',
    'VERSION_NOT_NEWER',
    async ({ image, publish }) => publish('1.1.0', await image('1.1.0b')),
  ],
  [
    'an older version',
    'VERSION_NOT_NEWER',
    async ({ image, publish }) => publish('1.0.9', await image('1.0.9')),
  ],
  [
    'a pre-release of the newest version',
    'VERSION_NOT_NEWER',
    async ({ image, publish }) => publish('1.1.0-rc.9', await image('1.1.0-rc.9')),
  ],
  [
    'a delta from a release that was never published',
    'DELTA_SOURCE_UNKNOWN',
    async ({ image, publish }) => publish('2.0.0', await image('2.0.0'), { deltaFrom: ['1.0.5'] }),
  ],
  [
    'a delta that fails (disk full)',
    'DELTA_FAILED',
    async ({ image, publish }) => {
      const diskFull: DeltaMaker = async (_old, _new, out) => {
        await writeFile(out, 'partial');
        throw Object.assign(new Error('ENOSPC: no space left on device, write'), {
          code: 'ENOSPC',
        });
      };
      return publish('2.0.0', await image('2.0.0'), { makeDelta: diskFull });
    },
  ],
];

for (const [what, code, attempt] of refusals) {
  test(`refused, repository unchanged: ${what}`, async (t) => {
    const context = await setUp(t, await releasedRepository());
    const before = await treeDigest(context.repo);
    const work = await tempDir(t, 'work');
    const error = await t.throwsAsync(
      attempt({
        ...context,
        publish: (version, path, extra = {}) =>
          context.publish(version, path, { workDir: work, ...extra }),
      }),
    );
    t.true(error instanceof PublishError, String(error));
    t.is((error as PublishError).code, code, error?.message);
    t.deepEqual(await treeDigest(context.repo), before);
    t.deepEqual(await readdir(work), [], 'no temporary file left');
  });
}

test('the default delta maker writes BSDIFF40 that stock bspatch applies', async (t) => {
  const { repo, image, images, publish } = await setUp(t);
  const v1 = await image('1.0.0');
  const v2 = await image('1.1.0');
  await publish('1.0.0', v1);
  const result = await publish('1.1.0', v2, { makeDelta: undefined });
  t.deepEqual(result.deltaTargets, ['rpi4/1.1.0/rootfs.from-1.0.0.bsdiff']);
  const folder = join(repo, 'targets', 'rpi4', '1.1.0');
  const delta = (await readdir(folder)).find((file) => file.endsWith('.bsdiff'))!;
  t.is((await readFile(join(folder, delta))).subarray(0, 8).toString(), 'BSDIFF40');
  const rebuilt = join(images, 'rebuilt.img');
  execFileSync('bspatch', [v1, rebuilt, join(folder, delta)]);
  t.is(sha256(await readFile(rebuilt)), sha256(await readFile(v2)));
});

// ---- publish-app ----

// Every file of the folder a target under <board>/apps/<version>/, an index
// listing them, one addTargets call; each refusal leaves the repository as it was. The
// check-in answer names the board's newest app release, and the device's app report is kept.

async function appFolder(
  parent: string,
  name: string,
  files: Record<string, string>,
): Promise<string> {
  const folder = join(parent, name);
  for (const [path, content] of Object.entries(files)) {
    await mkdir(join(folder, path, '..'), { recursive: true });
    await writeFile(join(folder, path), content);
  }
  return folder;
}

const release = (tag: string) => ({
  'modules/sampler/manifest.json': `{"name":"sampler","tag":"${tag}"}`,
  'modules/sampler/sampler.wasm': `wasm ${tag}`,
  'config/sampler.json': '{}',
});

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const sink = (lines: string[]) =>
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(chunk.toString());
        done();
      },
    });
  const code = await runCli(args, { out: sink(out), err: sink(err), env: {} });
  return { code, out: out.join(''), err: err.join('') };
}

test('publish-app: every file a signed target, the index lists them, in one signed step', async (t) => {
  const repo = await newRepository(t);
  const work = await tempDir(t, 'app');
  const folder = await appFolder(work, 'v1', release('1'));
  const before = (await loadRepositoryState(repo)).targets.envelope.signed.version;

  const result = await cli([
    'publish-app',
    '--repo',
    repo,
    '--board',
    'rpi4',
    '--version',
    '1.0.0',
    folder,
  ]);
  t.is(result.code, 0, result.err);
  t.regex(result.out, /published rpi4\/apps\/1\.0\.0\/app\.json: 3 files/);

  const state = await loadRepositoryState(repo);
  t.is(state.targets.envelope.signed.version, before + 1, 'one new targets version');
  const targets = state.targets.envelope.signed.targets;
  t.deepEqual(Object.keys(targets).sort(), [
    'rpi4/apps/1.0.0/app.json',
    'rpi4/apps/1.0.0/config/sampler.json',
    'rpi4/apps/1.0.0/modules/sampler/manifest.json',
    'rpi4/apps/1.0.0/modules/sampler/sampler.wasm',
  ]);
  t.deepEqual(targets['rpi4/apps/1.0.0/modules/sampler/sampler.wasm']!.custom, {
    board: 'rpi4',
    appVersion: '1.0.0',
    kind: 'app-file',
  });
  const indexEntry = targets['rpi4/apps/1.0.0/app.json']!;
  t.deepEqual(indexEntry.custom, { board: 'rpi4', appVersion: '1.0.0', kind: 'app' });
  const index = parseAppIndex(
    await readFile(
      join(
        repo,
        'targets',
        targetFileRelativePath('rpi4/apps/1.0.0/app.json', indexEntry.hashes.sha256),
      ),
    ),
  );
  t.like(index, { board: 'rpi4', version: '1.0.0' });
  for (const file of index.files) {
    const content = release('1')[file.path as keyof ReturnType<typeof release>];
    t.deepEqual(file, { path: file.path, length: content.length, sha256: sha256(content) });
    t.is(targets[`rpi4/apps/1.0.0/${file.path}`]!.hashes.sha256, file.sha256);
  }

  // A newer one goes beside it; another board has its own sequence.
  const v2 = await appFolder(work, 'v2', release('2'));
  await publishAppRelease({ repoDir: repo, board: 'rpi4', version: '1.1.0', folder: v2 });
  await publishAppRelease({ repoDir: repo, board: 'qemu', version: '0.1.0', folder: v2 });
  t.truthy(
    (await loadRepositoryState(repo)).targets.envelope.signed.targets['rpi4/apps/1.1.0/app.json'],
  );
});

test('publish-app refuses, leaving the repository as it was', async (t) => {
  const repo = await newRepository(t);
  const work = await tempDir(t, 'app');
  const good = await appFolder(work, 'good', release('1'));
  await publishAppRelease({ repoDir: repo, board: 'rpi4', version: '1.1.0', folder: good });
  const digest = await treeDigest(repo);

  const refused = async (
    options: { version?: string; board?: string; folder: string },
    code: PublishErrorCode,
    message: RegExp,
  ) => {
    const error = await t.throwsAsync(
      publishAppRelease({ repoDir: repo, board: 'rpi4', version: '2.0.0', ...options }),
      { instanceOf: PublishError },
    );
    t.is(error?.code, code, error?.message);
    t.regex(error?.message ?? '', message);
    t.deepEqual(await treeDigest(repo), digest, `${code}: repository unchanged`);
  };
  await refused({ version: '1.1.0', folder: good }, 'VERSION_NOT_NEWER', /not newer than 1\.1\.0/);
  await refused({ version: '1.0.9', folder: good }, 'VERSION_NOT_NEWER', /not newer/);
  await refused({ version: 'latest', folder: good }, 'VERSION_INVALID', /semantic version/);
  await refused({ version: '..', folder: good }, 'VERSION_INVALID', /'\.\.'/);
  await refused({ board: 'a/b', folder: good }, 'BOARD_INVALID', /board/);

  const empty = join(work, 'empty');
  await mkdir(join(empty, 'modules'), { recursive: true });
  await refused({ folder: empty }, 'APP_FOLDER_INVALID', /no files/);
  await refused({ folder: join(work, 'missing') }, 'APP_FOLDER_INVALID', /not a folder/);

  const linked = await appFolder(work, 'linked', release('2'));
  await symlink('../../../../etc/passwd', join(linked, 'modules/sampler/passwd'));
  await refused({ folder: linked }, 'APP_FOLDER_INVALID', /modules\/sampler\/passwd: a symlink/);

  const hidden = await appFolder(work, 'hidden', { ...release('3'), 'modules/.secret': 'x' });
  await refused({ folder: hidden }, 'APP_FOLDER_INVALID', /hidden segment/);

  const shadowing = await appFolder(work, 'shadowing', { ...release('4'), 'app.json': '{}' });
  await refused({ folder: shadowing }, 'APP_FOLDER_INVALID', /index's own name/);

  const badName = await appFolder(work, 'bad-name', { ...release('5'), 'a..b': 'x' });
  await refused({ folder: badName }, 'APP_FOLDER_INVALID', /'\.\.'/);

  const usage = await cli(['publish-app', '--repo', repo, '--board', 'rpi4', '--version', '3.0.0']);
  t.is(usage.code, 2);
  t.regex(usage.err, /missing FOLDER/);
  const failed = await cli([
    'publish-app',
    '--repo',
    repo,
    '--board',
    'rpi4',
    '--version',
    '1.0.0',
    good,
  ]);
  t.is(failed.code, 1);
  t.regex(failed.err, /not newer/);
});

test('the check-in answer names the board newest app release; the app report is recorded', async (t) => {
  const repo = await newRepository(t);
  const server = await startServer(t, repo);
  const device = new SimulatedDevice('app-device-1', 'rpi4');
  t.is((await device.enroll(server.url, FLEET_TOKEN)).status, 201);

  const before = await device.checkIn(server.url, '1.0.0');
  t.is(before.status, 200);
  t.is(before.body.app, null, 'no app release yet');

  const work = await tempDir(t, 'app');
  await publishAppRelease({
    repoDir: repo,
    board: 'rpi4',
    version: '1.0.0',
    folder: await appFolder(work, 'v1', release('1')),
  });
  await publishAppRelease({
    repoDir: repo,
    board: 'qemu',
    version: '9.0.0',
    folder: await appFolder(work, 'q', release('q')),
  });
  const first = await device.checkIn(server.url, '1.0.0');
  t.deepEqual(first.body.app, {
    version: '1.0.0',
    board: 'rpi4',
    indexTarget: 'rpi4/apps/1.0.0/app.json',
  });
  await publishAppRelease({
    repoDir: repo,
    board: 'rpi4',
    version: '1.1.0',
    folder: await appFolder(work, 'v2', release('2')),
  });
  const report = {
    ...device.checkInReport('1.0.0'),
    app: { version: '1.0.0', state: 'downloading', targetVersion: '1.1.0', bytesDone: 10 },
  };
  const second = await device.post(server.url, DEVICE_API_PATHS.checkIn, report);
  t.is(second.status, 200);
  t.like(second.body.app, { version: '1.1.0' }, 'a new release is seen at the next check-in');

  const listed = await server.operator('GET', '/api/v1/devices?board=rpi4');
  const devices = listed.body.devices as Array<{ lastCheckIn: Record<string, unknown> }>;
  t.deepEqual(devices[0]!.lastCheckIn.app, report.app);
  const detail = await server.operator('GET', '/api/v1/devices/app-device-1');
  const checkIns = detail.body.checkIns as Array<Record<string, unknown>>;
  t.deepEqual(checkIns[0]!.app, report.app);
  t.false('app' in checkIns[1]!, 'a check-in without an app report has none');
});
