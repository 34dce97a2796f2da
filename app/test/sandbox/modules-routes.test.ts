import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ModuleRegistry } from '../../src/sandbox/module-registry.js';
import { testConfig, testServer } from '../helpers.js';
import { guestWat, manifestFor, memoryLog, wat } from './sandbox-helpers.js';

// The module API through fastify's inject: authentication, load, replace, call, unload, metrics.
const dir = mkdtempSync(join(tmpdir(), 'edge-modules-api-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));
const guest = wat(guestWat());

async function serverWithModules(tokenFile: string) {
  const config = testConfig({
    EDGE_MODULES_API_TOKEN_FILE: tokenFile,
    EDGE_MODULES_DIR: join(dir, 'none'),
  });
  const app = await testServer({ config });
  app.modules = new ModuleRegistry(config.modules, {
    log: memoryLog(),
    metricsRegistry: app.metricsRegistry,
  });
  return app;
}

const body = (name: string, wasm: Uint8Array, overrides = {}) => ({
  manifest: manifestFor(name, wasm, overrides),
  wasm: Buffer.from(wasm).toString('base64'),
});

test('without a token file, changes are refused with a 403 that names the file', async (t) => {
  const tokenFile = join(dir, 'absent-token');
  const app = await serverWithModules(tokenFile);
  t.teardown(async () => {
    await app.modules?.close();
    await app.close();
  });
  const put = await app.inject({
    method: 'PUT',
    url: '/api/v1/modules/adder',
    payload: body('adder', guest),
  });
  t.is(put.statusCode, 403);
  t.like(put.json(), {
    code: 'MODULE_API_LOCKED',
    message: `module changes are refused: no API token file ${tokenFile}`,
  });
  t.is((await app.inject('/api/v1/modules')).statusCode, 200, 'reading needs no token');
});

test('load, call with JSON args and with bytes, replace, unload; metrics at /metrics', async (t) => {
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, 'secret-token\n');
  const app = await serverWithModules(tokenFile);
  t.teardown(async () => {
    await app.modules?.close();
    await app.close();
  });
  const auth = { authorization: 'Bearer secret-token' };
  const wrong = await app.inject({
    method: 'PUT',
    url: '/api/v1/modules/adder',
    headers: { authorization: 'Bearer guess' },
    payload: body('adder', guest),
  });
  t.is(wrong.statusCode, 401);
  const created = await app.inject({
    method: 'PUT',
    url: '/api/v1/modules/adder',
    headers: auth,
    payload: body('adder', guest),
  });
  t.is(created.statusCode, 201, created.body);
  t.like(created.json(), { name: 'adder', state: 'running', source: 'api' });
  const refused = await app.inject({
    method: 'PUT',
    url: '/api/v1/modules/adder',
    headers: auth,
    payload: body('adder', wat('(module (memory (export "memory") 1))')),
  });
  t.is(refused.statusCode, 422);
  t.like(refused.json(), { code: 'MODULE_REFUSED' });
  const mismatch = await app.inject({
    method: 'PUT',
    url: '/api/v1/modules/other',
    headers: auth,
    payload: body('adder', guest),
  });
  t.is(mismatch.statusCode, 400);

  const call = await app.inject({
    method: 'POST',
    url: '/api/v1/modules/adder/call/add',
    headers: auth,
    payload: { args: [20, 22] },
  });
  t.is(call.statusCode, 200, call.body);
  t.is(call.json<{ result: unknown }>().result, 42);
  const logged = await app.inject({
    method: 'POST',
    url: '/api/v1/modules/adder/call/log',
    headers: { ...auth, 'content-type': 'application/octet-stream' },
    payload: Buffer.from('from the API'),
  });
  t.is(logged.json<{ result: unknown }>().result, 0, logged.body);
  const trap = await app.inject({
    method: 'POST',
    url: '/api/v1/modules/adder/call/trap',
    headers: auth,
    payload: {},
  });
  t.is(trap.statusCode, 422);
  t.like(trap.json(), { code: 'MODULE_TRAP' });
  const unauthenticatedCall = await app.inject({
    method: 'POST',
    url: '/api/v1/modules/adder/call/add',
    payload: { args: [1, 2] },
  });
  t.is(unauthenticatedCall.statusCode, 401);

  const v2 = wat(guestWat({ version: 2 }));
  const replaced = await app.inject({
    method: 'PUT',
    url: '/api/v1/modules/adder',
    headers: auth,
    payload: body('adder', v2, { version: '2.0.0' }),
  });
  t.is(replaced.statusCode, 200);
  const version = await app.inject({
    method: 'POST',
    url: '/api/v1/modules/adder/call/version',
    headers: auth,
  });
  t.is(version.json<{ result: unknown }>().result, 2, version.body);
  const list = await app.inject('/api/v1/modules');
  t.like(list.json(), { modules: [{ name: 'adder', version: '2.0.0' }] });

  const metrics = await app.inject('/metrics');
  t.regex(metrics.body, /edge_module_calls_total\{module="adder"\} \d+/);
  t.regex(metrics.body, /edge_module_traps_total\{module="adder"\} 1/);

  t.is(
    (await app.inject({ method: 'DELETE', url: '/api/v1/modules/adder', headers: auth }))
      .statusCode,
    204,
  );
  t.is(
    (await app.inject({ method: 'DELETE', url: '/api/v1/modules/adder', headers: auth }))
      .statusCode,
    404,
  );
  t.is((await app.inject('/api/v1/modules/adder')).statusCode, 404);
});
