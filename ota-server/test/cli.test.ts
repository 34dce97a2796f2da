import test from 'ava';
import type { ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { runCli } from '../src/cli.js';
import { freePort } from '../../bench/lib/http-load.js';
import { ext4Image, fakeDeltaMaker, tempDir, treeDigest } from './helpers/fixtures.js';
import { OPERATOR_TOKEN, startServer } from './helpers/test-server.js';

const BIN = fileURLToPath(new URL('../bin/ota-server.js', import.meta.url));

function capture(): { stream: Writable; text: () => string } {
  const chunks: Buffer[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      chunks.push(chunk);
      done();
    },
  });
  return { stream, text: () => Buffer.concat(chunks).toString() };
}

async function cli(argv: string[], env: NodeJS.ProcessEnv = {}) {
  const out = capture();
  const err = capture();
  const code = await runCli(
    argv,
    { out: out.stream, err: err.stream, env },
    { makeDelta: fakeDeltaMaker },
  );
  return { code, out: out.text(), err: err.text() };
}

async function initialised(t: ExecutionContext): Promise<string> {
  const repo = join(await tempDir(t, 'cli'), 'repo');
  t.is((await cli(['init', '--repo', repo])).code, 0);
  return repo;
}

test('--help prints usage and succeeds; no command or an unknown one is a usage error', async (t) => {
  const help = await cli(['--help']);
  t.is(help.code, 0);
  t.regex(help.out, /^usage: ota-server <command>/);
  t.is((await cli([])).code, 2);
  const unknown = await cli(['frobnicate']);
  t.is(unknown.code, 2);
  t.regex(unknown.err, /^ota-server: unknown command 'frobnicate'/);
});

test('bad options: exit 2 and one line that says what is wrong', async (t) => {
  for (const [argv, pattern] of [
    [['init'], /--repo is required \(or OTA_REPO\)/],
    [['init', '--repo'], /--repo/],
    [['publish', '--repo', 'r', '--board', 'b', '--version', '1.0.0'], /missing IMAGE/],
    [
      ['publish', '--repo', 'r', '--board', 'b', '--version', '1.0.0', '--deltas', 'x', 'i'],
      /--deltas must be an integer/,
    ],
    [['status', '--bogus'], /Unknown option '--bogus'/],
    [['serve', '--repo', '.', '--port', '70000'], /./],
    [['rollout', 'explode'], /rollout needs one of/],
  ] as const) {
    const result = await cli([...argv]);
    t.is(result.code, 2, argv.join(' '));
    t.regex(result.err, pattern, argv.join(' '));
    t.is(result.err.trim().split('\n').length, 1, argv.join(' '));
  }
});

test('init, publish, status, refresh, rotate-keys through the command line', async (t) => {
  const dir = await tempDir(t, 'cli');
  const repo = join(dir, 'repo');
  const init = await cli(['init', '--repo', repo]);
  t.is(init.code, 0);
  t.regex(init.out, new RegExp(`root key: ${join(repo, 'keys', 'root.pem')}`));
  t.regex(init.out, /move it offline/);
  const again = await cli(['init'], { OTA_REPO: repo });
  t.is(again.code, 1);
  t.regex(again.err, /^ota-server init: .*not empty/);

  const v1 = await ext4Image(dir, 'v1.img', { 'a.txt': '1' });
  const v2 = await ext4Image(dir, 'v2.img', { 'a.txt': '2' });
  t.is(
    (await cli(['publish', '--repo', repo, '--board', 'rpi4', '--version', '1.0.0', v1])).code,
    0,
  );
  const second = await cli([
    'publish',
    '--repo',
    repo,
    '--board',
    'rpi4',
    '--version',
    '1.1.0',
    v2,
  ]);
  t.is(second.code, 0, second.err);
  t.regex(second.out, /^published rpi4\/1\.1\.0\/rootfs\.ext4 \(targets v3/);
  t.regex(second.out, /delta rpi4\/1\.1\.0\/rootfs\.from-1\.0\.0\.bsdiff/);
  t.regex(second.err, /ext4 slot image, 1\.0 MiB; deltas from 1\.0\.0/);
  t.regex(second.err, /delta 1\/1 from 1\.0\.0: 100%/);

  const before = await treeDigest(repo);
  const bad = await cli(['publish', '--repo', repo, '--board', 'rpi4', '--version', '1.0.5', v2]);
  t.is(bad.code, 1);
  t.regex(bad.err, /^ota-server publish: version 1\.0\.5 is not newer than 1\.1\.0/);
  t.is(bad.err.trim().split('\n').length, 1);
  t.deepEqual(await treeDigest(repo), before);

  const status = await cli(['status', '--repo', repo]);
  t.is(status.code, 0);
  t.regex(status.out, /targets: 3/);
  const json = JSON.parse((await cli(['status', '--repo', repo, '--json'])).out) as {
    targetsCount: number;
  };
  t.is(json.targetsCount, 3);
  t.regex((await cli(['refresh', '--repo', repo])).out, /^re-signed timestamp/);
  const rotated = await cli([
    'rotate-keys',
    '--repo',
    repo,
    '--role',
    'timestamp',
    '--root-key',
    join(repo, 'keys', 'root.pem'),
  ]);
  t.is(rotated.code, 0, rotated.err);
  t.regex(rotated.out, /^timestamp key is now [0-9a-f]{64}/);
  t.is((await cli(['status', '--repo', repo])).code, 0);
});

test('rollout commands talk to the operator API', async (t) => {
  const repo = await initialised(t);
  const dir = await tempDir(t, 'cli');
  await cli([
    'publish',
    '--repo',
    repo,
    '--board',
    'rpi4',
    '--version',
    '1.0.0',
    await ext4Image(dir, 'v1.img', {}),
  ]);
  const server = await startServer(t, repo);
  const tokenFile = join(dir, 'operator-token');
  await writeFile(tokenFile, `# operator\n${OPERATOR_TOKEN}\n`);
  const env = { OTA_SERVER_URL: server.url, OTA_OPERATOR_TOKEN_FILE: tokenFile };

  const created = await cli(
    ['rollout', 'create', '--board', 'rpi4', '--version', '1.0.0', '--percent', '10'],
    env,
  );
  t.is(created.code, 0, created.err);
  const id = created.out.split(/\s+/)[0]!;
  t.regex(created.out, /rpi4 1\.0\.0 {2}10% {2}active/);
  t.regex((await cli(['rollout', 'widen', id, '--percent', '50'], env)).out, /50% {2}active/);
  t.regex((await cli(['rollout', 'pause', id], env)).out, /paused/);
  t.regex((await cli(['rollout', 'resume', id], env)).out, /active/);
  t.regex((await cli(['rollout', 'list', '--board', 'rpi4'], env)).out, new RegExp(`^${id} `));
  t.regex((await cli(['rollout', 'cancel', id], env)).out, /cancelled/);

  const refused = await cli(['rollout', 'widen', id, '--percent', '60'], env);
  t.is(refused.code, 1);
  t.regex(refused.err, /409 ROLLOUT_STATE/);
  const unpublished = await cli(
    ['rollout', 'create', '--board', 'rpi4', '--version', '2.0.0', '--percent', '10'],
    env,
  );
  t.regex(unpublished.err, /422 RELEASE_NOT_PUBLISHED/);
  const noToken = await cli(['rollout', 'list'], { OTA_SERVER_URL: server.url });
  t.is(noToken.code, 2);
  const wrongToken = await cli(['rollout', 'list'], {
    OTA_SERVER_URL: server.url,
    OTA_OPERATOR_TOKEN: 'x'.repeat(20),
  });
  t.regex(wrongToken.err, /401 OPERATOR_TOKEN_INVALID/);
});

test('the ota-server bin serves until SIGTERM, with JSON logs', async (t) => {
  const repo = await initialised(t);
  const dir = await tempDir(t, 'serve');
  const tokens = join(dir, 'fleet-tokens');
  await writeFile(tokens, 'sha256:' + 'a'.repeat(64) + '\n');
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [BIN, 'serve', '--repo', repo, '--port', String(port), '--data', join(dir, 'data')],
    {
      env: { ...process.env, OTA_FLEET_TOKEN_FILE: tokens, OTA_LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  t.teardown(() => child.kill('SIGKILL'));
  let stdout = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  const deadline = Date.now() + 30_000;
  let ready: Response | undefined;
  while (Date.now() < deadline) {
    ready = await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined);
    if (ready) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  t.is(ready?.status, 200);
  t.deepEqual(await ready?.json(), { ok: true, store: 'sqlite' });
  const root = await fetch(`http://127.0.0.1:${port}/tuf/metadata/root.json`);
  t.deepEqual(
    Buffer.from(await root.arrayBuffer()),
    await readFile(join(repo, 'metadata', 'root.json')),
  );
  child.kill('SIGTERM');
  const [code] = (await once(child, 'exit')) as [number];
  t.is(code, 0);
  const logs = stdout
    .trim()
    .split('\n')
    .map((entry) => JSON.parse(entry) as { msg: string });
  t.true(logs.some((entry) => entry.msg === 'update server ready'));
  t.true(logs.some((entry) => entry.msg === 'stopping'));
});
