import test from 'ava';
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { DEVICE_API_PATHS, parseAppIndex, targetFileRelativePath } from '@edge/formats';
import { runCli } from '../src/cli.js';
import { PublishError, type PublishErrorCode } from '../src/publish/errors.js';
import { publishAppRelease } from '../src/publish/publish-app.js';
import { loadRepositoryState } from '../src/tuf/repository-state.js';
import { SimulatedDevice } from './helpers/device.js';
import { newRepository, sha256, tempDir, treeDigest } from './helpers/fixtures.js';
import { FLEET_TOKEN, startServer } from './helpers/test-server.js';

// publish-app: every file of the folder a target under <board>/apps/<version>/, an index
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
