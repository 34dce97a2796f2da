import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { BUNDLE, NODE_FLAGS, buildBundle } from '../build.js';
import { guestWat, manifestFor, wat } from './sandbox/sandbox-helpers.js';

// The bundle runs from a folder with no node_modules anywhere above it.
const runDir = mkdtempSync(join(tmpdir(), 'edge-bundle-'));
const bundle = join(runDir, 'edge-server.mjs');

test.before(async () => {
  const size = await buildBundle();
  if (size > 1.5 * 1024 * 1024) throw new Error(`bundle is ${size} bytes, over 1.5 MB`);
  copyFileSync(BUNDLE, bundle);
  copyFileSync(NODE_FLAGS, join(runDir, 'node-flags.mjs'));
});

test('node-flags.mjs prints the heap flags for the start script with plain node', (t) => {
  const result = spawnSync(process.execPath, [join(runDir, 'node-flags.mjs')], {
    cwd: runDir,
    env: { PATH: process.env.PATH },
    encoding: 'utf8',
  });
  t.is(result.status, 0, result.stderr);
  t.regex(result.stdout, /^--max-old-space-size=\d+( --max-semi-space-size=\d+)?\n$/);
});

test('the bundle serves its routes with plain node and stops on SIGTERM', async (t) => {
  const slot = join(runDir, 'slot.img');
  const data = randomBytes(1 << 20);
  writeFileSync(slot, data);
  const server = spawn(process.execPath, [bundle], {
    cwd: runDir,
    env: {
      PATH: process.env.PATH,
      EDGE_SERVER_HOST: '127.0.0.1',
      EDGE_SERVER_PORT: '0',
      EDGE_FIRMWARE_SLOT_PATH: slot,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<number | null>((resolve) => server.on('exit', resolve));
  const logs: Array<Record<string, unknown>> = [];
  let base = '';
  for await (const line of createInterface({ input: server.stdout })) {
    const entry = JSON.parse(line) as Record<string, unknown>;
    logs.push(entry);
    const listening = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(String(entry.msg));
    if (listening) {
      base = listening[1]!;
      break;
    }
  }
  t.truthy(base, 'the server said where it listens');

  t.deepEqual(await (await fetch(`${base}/healthz`)).json(), { status: 'ok' });
  t.deepEqual(await (await fetch(`${base}/readyz`)).json(), { status: 'ready' });
  let hash: Response;
  do hash = await fetch(`${base}/api/v1/firmware/hash`);
  while (hash.status === 503);
  t.deepEqual(await hash.json(), { hash: createHash('sha256').update(data).digest('hex') });
  const metrics = await (await fetch(`${base}/metrics`)).text();
  t.regex(metrics, /process_resident_memory_bytes \d+/);

  server.kill('SIGTERM');
  t.is(await exited, 0);
  t.true(
    logs.every((entry) => typeof entry.level === 'number'),
    'every log line is pino JSON',
  );
});

test('the bundle stops with one clear line on a bad setting', (t) => {
  const result = spawnSync(process.execPath, [bundle], {
    cwd: runDir,
    env: { PATH: process.env.PATH, EDGE_SERVER_PORT: 'eighty' },
    encoding: 'utf8',
  });
  t.is(result.status, 78);
  t.is(
    result.stderr,
    'edge-server: config error: server.port from EDGE_SERVER_PORT: must be integer\n',
  );
});

test('the bundle loads a module from its folder into a worker and calls it', async (t) => {
  // The worker's script is embedded in the bundle: nothing beside it but the module folder.
  const modulesDir = join(runDir, 'modules');
  const wasm = wat(guestWat({ version: 7 }));
  mkdirSync(join(modulesDir, 'seven'), { recursive: true });
  writeFileSync(join(modulesDir, 'seven', 'seven.wasm'), wasm);
  writeFileSync(
    join(modulesDir, 'seven', 'manifest.json'),
    JSON.stringify(manifestFor('seven', wasm)),
  );
  writeFileSync(join(runDir, 'api-token'), 'bundle-token\n');
  const server = spawn(process.execPath, [bundle], {
    cwd: runDir,
    env: {
      PATH: process.env.PATH,
      EDGE_SERVER_HOST: '127.0.0.1',
      EDGE_SERVER_PORT: '0',
      EDGE_FIRMWARE_SLOT_PATH: join(runDir, 'no-slot'),
      EDGE_MODULES_DIR: modulesDir,
      EDGE_MODULES_API_TOKEN_FILE: join(runDir, 'api-token'),
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<number | null>((resolve) => server.on('exit', resolve));
  let base = '';
  let loaded: unknown;
  for await (const line of createInterface({ input: server.stdout })) {
    const entry = JSON.parse(line) as Record<string, unknown>;
    base ||= /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(String(entry.msg))?.[1] ?? '';
    if (entry.msg === 'modules loaded') {
      loaded = entry.modules;
      break;
    }
  }
  t.deepEqual(loaded, { loaded: ['seven'], unchanged: [], removed: [], refused: [] });
  const call = await fetch(`${base}/api/v1/modules/seven/call/version`, {
    method: 'POST',
    headers: { authorization: 'Bearer bundle-token' },
  });
  t.deepEqual(((await call.json()) as { result: unknown }).result, 7);
  server.kill('SIGTERM');
  t.is(await exited, 0);
});
