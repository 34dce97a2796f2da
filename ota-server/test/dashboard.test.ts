import test, { type ExecutionContext } from 'ava';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { runCli } from '../src/cli.js';
import { verifyPassword } from '../src/dashboard/password-hash.js';
import { openFleetStore } from '../src/fleet/open-store.js';
import { rolloutBucket } from '../src/fleet/rollout-policy.js';
import { addTargets } from '../src/tuf/index.js';
import { DashboardClient, OPERATOR, addOperator } from './helpers/dashboard-client.js';
import { SimulatedDevice } from './helpers/device.js';
import { newRepository, publishImage, tempDir } from './helpers/fixtures.js';
import {
  FLEET_TOKEN,
  OPERATOR_TOKEN,
  startServer,
  type TestServer,
} from './helpers/test-server.js';

// The fleet dashboard's back end: login and sessions, its read and change API, the live
// events, the automatic pause, and what opens what.

const CSP =
  "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; " +
  "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/** Releases 1.0.0 and 1.1.0 for rpi4; the images lie next to the repository, in its folder. */
async function repository(t: ExecutionContext | null): Promise<string> {
  const repo = await newRepository(t);
  const files = join(dirname(repo), 'images');
  await mkdir(files);
  for (const version of ['1.0.0', '1.1.0']) {
    const path = join(files, `${version}.img`);
    await writeFile(path, `image ${version} `.repeat(10));
    await publishImage(repo, 'rpi4', version, path);
  }
  return repo;
}

// The server only reads the repository: the tests that do not add to it share one per file.
let shared: Promise<string> | undefined;
function sharedRepository(): Promise<string> {
  shared ??= repository(null);
  return shared;
}

test.after.always(async () => {
  const repo = await shared?.catch(() => undefined);
  if (repo) await rm(dirname(repo), { recursive: true, force: true });
});

async function dashboardServer(
  t: ExecutionContext,
  options: Parameters<typeof startServer>[2] & { repo?: string } = {},
): Promise<{ server: TestServer; client: DashboardClient }> {
  const server = await startServer(t, options.repo ?? (await sharedRepository()), options);
  await addOperator(server.store);
  const client = new DashboardClient(server.url);
  t.is((await client.login()).status, 200);
  return { server, client };
}

async function fleet(server: TestServer, count: number, prefix = 'pi'): Promise<SimulatedDevice[]> {
  const devices = Array.from(
    { length: count },
    (_, n) => new SimulatedDevice(`${prefix}-${String(n).padStart(3, '0')}`),
  );
  await Promise.all(devices.map((device) => device.enroll(server.url, FLEET_TOKEN)));
  return devices;
}

async function until<T>(what: () => Promise<T>, done: (value: T) => boolean): Promise<T> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const value = await what();
    if (done(value) || Date.now() > deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

test('login: the cookie is HttpOnly, SameSite=Strict, Path=/dashboard; session, logout', async (t) => {
  const server = await startServer(t, await sharedRepository());
  await addOperator(server.store);
  const client = new DashboardClient(server.url);
  t.like((await client.get('/dashboard/api/session')).body, { code: 'NO_SESSION' });

  const login = await client.login();
  t.is(login.status, 200);
  t.is(login.body.username, OPERATOR.username);
  t.regex(String(login.body.csrfToken), /^[A-Za-z0-9_-]{43}$/);
  const cookie = login.headers.get('set-cookie') ?? '';
  t.regex(cookie, /^edge_session=[A-Za-z0-9_-]{43};/);
  t.regex(cookie, /; Path=\/dashboard(;|$)/);
  t.regex(cookie, /; HttpOnly/);
  t.regex(cookie, /; SameSite=Strict/);
  t.notRegex(cookie, /Secure/, 'plain http: no Secure');
  t.is(login.headers.get('content-security-policy'), CSP);

  const session = await client.get('/dashboard/api/session');
  t.deepEqual(session.body, { username: OPERATOR.username, csrfToken: client.csrfToken });
  t.is(session.headers.get('cache-control'), 'no-store');

  const stored = await server.store.session(
    (await import('../src/dashboard/sessions.js')).sessionIdHash(client.cookie.split('=')[1]!),
  );
  t.is(stored?.username, OPERATOR.username, 'only the hash of the token is stored');

  const logout = await client.send('POST', '/dashboard/api/logout');
  t.is(logout.status, 204);
  t.regex(logout.headers.get('set-cookie') ?? '', /edge_session=;.*Expires=Thu, 01 Jan 1970/);
  t.is((await client.get('/dashboard/api/session')).status, 401);
});

test('login: a wrong password and an unknown name get the same 401', async (t) => {
  const server = await startServer(t, await sharedRepository());
  await addOperator(server.store);
  const client = new DashboardClient(server.url);
  const wrong = await client.login(OPERATOR.username, 'not the password at all');
  const unknown = await client.login('mallory', OPERATOR.password);
  t.is(wrong.status, 401);
  t.is(unknown.status, 401);
  t.deepEqual(wrong.body, unknown.body);
  t.like(wrong.body, { code: 'LOGIN_FAILED', message: 'wrong username or password' });
  t.is(wrong.headers.get('set-cookie'), null);
});

test('login: 5 failures for a name make the 6th try wait (429, Retry-After)', async (t) => {
  const server = await startServer(t, await sharedRepository());
  await addOperator(server.store);
  const client = new DashboardClient(server.url);
  for (let n = 0; n < 5; n++)
    t.is((await client.login(OPERATOR.username, `guess-${n}`)).status, 401);
  const throttled = await client.login();
  t.is(throttled.status, 429, 'even the right password waits');
  t.like(throttled.body, { code: 'TOO_MANY_LOGINS' });
  const retryAfter = Number(throttled.headers.get('retry-after'));
  t.true(retryAfter > 800 && retryAfter <= 900, String(retryAfter));
});

test('behind a TLS proxy (trustProxy) the cookie is Secure; a login from another origin is refused', async (t) => {
  const server = await startServer(t, await sharedRepository(), { config: { trustProxy: true } });
  await addOperator(server.store);
  const client = new DashboardClient(server.url);
  const login = await client.login(OPERATOR.username, OPERATOR.password, {
    'x-forwarded-proto': 'https',
    'x-forwarded-host': 'fleet.example.com',
    origin: 'https://fleet.example.com',
  });
  t.is(login.status, 200);
  t.regex(login.headers.get('set-cookie') ?? '', /; Secure/);

  const foreign = await new DashboardClient(server.url).login(
    OPERATOR.username,
    OPERATOR.password,
    {
      origin: 'https://evil.example.net',
    },
  );
  t.is(foreign.status, 403);
  t.like(foreign.body, { code: 'FOREIGN_ORIGIN' });

  const untrusted = await startServer(t, await sharedRepository());
  await addOperator(untrusted.store);
  const plain = await new DashboardClient(untrusted.url).login(
    OPERATOR.username,
    OPERATOR.password,
    {
      'x-forwarded-proto': 'https',
    },
  );
  t.notRegex(plain.headers.get('set-cookie') ?? '', /Secure/, 'no proxy trusted: no Secure');
});

test('CSRF: a change without the session token, or with another, is refused', async (t) => {
  const { client } = await dashboardServer(t);
  const body = { board: 'rpi4', version: '1.1.0', percent: 10 };
  const none = await client.send('POST', '/dashboard/api/rollouts', body, false);
  t.is(none.status, 403);
  t.like(none.body, { code: 'CSRF' });
  const other = await client.request('POST', '/dashboard/api/rollouts', body, {
    headers: { 'x-csrf-token': 'A'.repeat(43) },
  });
  t.is(other.status, 403);
  t.is((await client.send('POST', '/dashboard/api/logout', undefined, false)).status, 403);
  t.is((await client.send('POST', '/dashboard/api/rollouts', body)).status, 201);
});

test('no device, fleet or operator token opens the dashboard API; the cookie opens nothing else', async (t) => {
  const { server, client } = await dashboardServer(t);
  const [device] = await fleet(server, 1);
  const paths = ['/dashboard/api/overview', '/dashboard/api/devices', '/dashboard/api/session'];
  for (const path of paths) {
    const deviceToken = await device!.token('GET', path, undefined);
    for (const authorization of [
      `Bearer ${deviceToken}`,
      `Bearer ${FLEET_TOKEN}`,
      `Bearer ${OPERATOR_TOKEN}`,
    ]) {
      const answer = await fetch(`${server.url}${path}`, { headers: { authorization } });
      t.is(answer.status, 401, `${path} with ${authorization.slice(0, 20)}`);
      t.like(await answer.json(), { code: 'NO_SESSION' });
    }
  }
  const withCookie = { cookie: client.cookie, 'x-csrf-token': client.csrfToken };
  for (const path of [
    '/api/v1/devices',
    '/api/v1/rollouts',
    `/api/v1/devices/${device!.deviceId}`,
  ]) {
    const answer = await fetch(`${server.url}${path}`, { headers: withCookie });
    t.is(answer.status, 401, path);
  }
  const checkIn = await fetch(`${server.url}/api/v1/device/check-in`, {
    method: 'POST',
    headers: { ...withCookie, 'content-type': 'application/json' },
    body: JSON.stringify(device!.checkInReport('1.0.0')),
  });
  t.is(checkIn.status, 401);
  t.like(await checkIn.json(), { code: 'AUTH_MISSING' });
});

test('overview: devices by board, version and category; the active roll-outs', async (t) => {
  const { server, client } = await dashboardServer(t);
  const devices = await fleet(server, 8);
  const [current, alsoCurrent, downloading, failed, rolledBack, newer] = devices;
  await current!.checkIn(server.url, '1.0.0');
  await alsoCurrent!.checkIn(server.url, '1.0.0', { state: 'committed', targetVersion: '1.0.0' });
  await downloading!.checkIn(server.url, '1.0.0', {
    state: 'downloading',
    targetVersion: '1.1.0',
    progress: 0.4,
  });
  await failed!.checkIn(server.url, '1.0.0', {
    state: 'failed',
    targetVersion: '1.1.0',
    reason: 'hash mismatch',
  });
  await rolledBack!.checkIn(server.url, '1.0.0', {
    state: 'rolled-back',
    targetVersion: '1.1.0',
    reason: 'slot b did not come up',
  });
  await newer!.checkIn(server.url, '1.1.0');
  // Device 6 last seen two days ago; device 7 never checked in.
  await server.store.recordCheckIn(devices[6]!.deviceId, {
    at: new Date(Date.now() - 48 * 3600 * 1000),
    slot: 'a',
    firmwareHash: 'a'.repeat(64),
    version: '1.0.0',
    update: { state: 'idle' },
    desiredVersion: null,
  });
  const created = await client.send('POST', '/dashboard/api/rollouts', {
    board: 'rpi4',
    version: '1.1.0',
    percent: 50,
  });
  t.is(created.status, 201);

  const overview = await client.get('/dashboard/api/overview');
  t.is(overview.status, 200);
  t.like(overview.body, {
    total: 8,
    byBoard: [{ board: 'rpi4', count: 8 }],
    byState: { upToDate: 3, updating: 1, failed: 1, rolledBack: 1, notSeen: 2 },
  });
  t.deepEqual(overview.body.byVersion, [
    { board: 'rpi4', version: '1.1.0', count: 1 },
    { board: 'rpi4', version: '1.0.0', count: 6 },
  ]);
  t.regex(String(overview.body.generatedAt), /^\d{4}-\d\d-\d\dT/);
  const [rollout] = overview.body.rollouts as Record<string, unknown>[];
  t.like(rollout, {
    board: 'rpi4',
    version: '1.1.0',
    percent: 50,
    state: 'active',
    failureThresholdPercent: 10,
    minDevicesForThreshold: 10,
    pausedReason: null,
  });
  const inside = devices.filter(
    (device) => rolloutBucket(String(rollout!.id), device.deviceId) < 50,
  );
  const counts = rollout!.counts as Record<string, number>;
  t.is(counts.targeted, inside.length);
  t.is(
    counts.updated! + counts.updating! + counts.failed! + counts.rolledBack! + counts.pending!,
    counts.targeted!,
  );
  t.is(counts.updated, inside.includes(newer!) ? 1 : 0);
  t.is(counts.failed, inside.includes(failed!) ? 1 : 0);
  t.is(counts.rolledBack, inside.includes(rolledBack!) ? 1 : 0);
  t.is(counts.updating, inside.includes(downloading!) ? 1 : 0);
});

test('devices: pages, search, sort, filters', async (t) => {
  const { server, client } = await dashboardServer(t);
  const devices = [...(await fleet(server, 23, 'pi')), ...(await fleet(server, 3, 'Gate_x'))];
  for (const [n, device] of devices.entries()) {
    if (n === 5) continue; // never seen
    await device.checkIn(
      server.url,
      n % 2 ? '1.1.0' : '1.0.0',
      n === 7 ? { state: 'failed', targetVersion: '1.1.0', reason: 'disk full' } : undefined,
    );
  }
  const page = async (query: string) => {
    const answer = await client.get(`/dashboard/api/devices?${query}`);
    t.is(answer.status, 200, JSON.stringify(answer.body));
    return answer.body as {
      total: number;
      page: number;
      pageSize: number;
      devices: { deviceId: string; category: string; lastSeen: string | null; version: string }[];
    };
  };
  const first = await page('pageSize=10');
  t.like(first, { total: 26, page: 1, pageSize: 10 });
  t.deepEqual(first.devices.map((device) => device.deviceId).slice(0, 4), [
    'Gate_x-000',
    'Gate_x-001',
    'Gate_x-002',
    'pi-000',
  ]);
  const third = await page('pageSize=10&page=3');
  t.is(third.devices.length, 6);
  t.is(third.devices.at(-1)!.deviceId, 'pi-022');

  t.is((await page('q=GATE_')).total, 3, 'case-insensitive, _ taken literally');
  t.is((await page('q=e_x')).total, 3);
  t.is((await page('q=%25')).total, 0, '% is literal');
  t.deepEqual(
    (await page('q=pi-01&sort=deviceId&order=desc')).devices.map((device) => device.deviceId),
    [
      'pi-019',
      'pi-018',
      'pi-017',
      'pi-016',
      'pi-015',
      'pi-014',
      'pi-013',
      'pi-012',
      'pi-011',
      'pi-010',
    ],
  );
  const failed = await page('category=failed');
  t.like(failed, { total: 1, devices: [{ deviceId: 'pi-007', category: 'failed' }] });
  t.like(failed.devices[0], {
    updateState: 'failed',
    targetVersion: '1.1.0',
    reason: 'disk full',
    version: '1.1.0',
  });
  t.like(await page('category=notSeen'), { total: 1, devices: [{ deviceId: 'pi-005' }] });
  t.is((await page('category=upToDate')).total, 24);
  t.is((await page('version=1.1.0')).total, 12);
  t.is((await page('board=qemu')).total, 0);

  const bySeen = await page('sort=lastSeen&order=desc&pageSize=200');
  t.is(bySeen.devices.at(-1)!.deviceId, 'pi-005', 'never seen sorts last when newest first');
  const seen = bySeen.devices.map((device) => device.lastSeen).filter(Boolean) as string[];
  t.deepEqual(seen, [...seen].sort().reverse());
  t.is((await page('sort=lastSeen&order=asc')).devices[0]!.deviceId, 'pi-005');
  const byVersion = await page('sort=version&order=desc&pageSize=200');
  t.is(byVersion.devices[0]!.version, '1.1.0');

  for (const bad of ['pageSize=5', 'pageSize=201', 'page=0', 'sort=nope', 'category=lost']) {
    t.is((await client.get(`/dashboard/api/devices?${bad}`)).status, 400, bad);
  }
});

test('a device page: check-ins newest first, the update timeline, the last failure', async (t) => {
  const { server, client } = await dashboardServer(t);
  const [device] = await fleet(server, 1);
  await device!.checkIn(server.url, '1.0.0');
  await device!.checkIn(server.url, '1.0.0');
  await device!.checkIn(server.url, '1.0.0', {
    state: 'downloading',
    targetVersion: '1.1.0',
    progress: 0.2,
  });
  await device!.checkIn(server.url, '1.0.0', {
    state: 'downloading',
    targetVersion: '1.1.0',
    progress: 0.9,
  });
  await device!.checkIn(server.url, '1.0.0', {
    state: 'rolled-back',
    targetVersion: '1.1.0',
    reason: 'slot b did not come up in 3 attempts',
  });
  await device!.checkIn(server.url, '1.0.0', { state: 'idle' });

  const answer = await client.get(`/dashboard/api/devices/${device!.deviceId}`);
  t.is(answer.status, 200);
  const body = answer.body as {
    device: Record<string, unknown>;
    checkIns: Record<string, unknown>[];
    timeline: { state: string; targetVersion: string | null; reason: string | null }[];
    lastFailure: Record<string, unknown> | null;
  };
  t.like(body.device, {
    deviceId: device!.deviceId,
    board: 'rpi4',
    version: '1.0.0',
    category: 'upToDate',
    updateState: 'idle',
    slot: 'a',
    firmwareHash: 'a'.repeat(64),
    app: null,
  });
  t.is(body.checkIns.length, 6);
  t.like(body.checkIns[1], {
    updateState: 'rolled-back',
    targetVersion: '1.1.0',
    version: '1.0.0',
    reason: 'slot b did not come up in 3 attempts',
  });
  t.like(body.checkIns[2], { updateState: 'downloading', progress: 0.9 });
  t.deepEqual(
    body.timeline.map((entry) => entry.state),
    ['idle', 'downloading', 'rolled-back', 'idle'],
  );
  t.like(body.lastFailure, {
    reason: 'slot b did not come up in 3 attempts',
    targetVersion: '1.1.0',
  });
  const missing = await client.get('/dashboard/api/devices/nobody');
  t.is(missing.status, 404);
  t.like(missing.body, { code: 'DEVICE_NOT_FOUND' });
});

test("releases: each board's versions newest first, image and delta sizes", async (t) => {
  const repo = await repository(t);
  const files = await tempDir(t, 'delta');
  const deltaPath = join(files, 'delta');
  await writeFile(deltaPath, 'a delta');
  const image = join(files, 'qemu.img');
  await writeFile(image, 'qemu image');
  await addTargets(repo, [
    { kind: 'image', board: 'qemu', version: '2.0.0', path: image },
    { kind: 'delta', board: 'rpi4', version: '1.1.0', sourceVersion: '1.0.0', path: deltaPath },
  ]);
  const { client } = await dashboardServer(t, { repo });
  const answer = await client.get('/dashboard/api/releases');
  t.is(answer.status, 200);
  const boards = answer.body.boards as { board: string; releases: Record<string, unknown>[] }[];
  t.deepEqual(
    boards.map((board) => board.board),
    ['qemu', 'rpi4'],
  );
  const rpi4 = boards[1]!.releases;
  t.deepEqual(
    rpi4.map((release) => release.version),
    ['1.1.0', '1.0.0'],
  );
  t.like(rpi4[0], {
    imageTarget: 'rpi4/1.1.0/rootfs.ext4',
    imageBytes: 'image 1.1.0 '.length * 10,
    deltas: [{ fromVersion: '1.0.0', target: 'rpi4/1.1.0/rootfs.from-1.0.0.bsdiff', bytes: 7 }],
  });
  t.regex(String(rpi4[0]!.publishedAt), /^\d{4}-/);
  t.deepEqual(rpi4[1]!.deltas, []);
});

test('roll-outs: create, widen, pause, resume, cancel, thresholds; refusals and their codes', async (t) => {
  const { server, client } = await dashboardServer(t);
  const api = '/dashboard/api/rollouts';
  t.like((await client.send('POST', api, { board: 'rpi4', version: '9.9.9', percent: 10 })).body, {
    statusCode: 422,
    code: 'RELEASE_NOT_PUBLISHED',
  });
  t.is(
    (
      await client.send('POST', api, {
        board: 'rpi4',
        version: '1.1.0',
        percent: 10,
        failureThresholdPercent: 0,
      })
    ).status,
    400,
  );
  const created = await client.send('POST', api, {
    board: 'rpi4',
    version: '1.1.0',
    percent: 10,
    failureThresholdPercent: 25,
    minDevicesForThreshold: 3,
  });
  t.is(created.status, 201);
  const rollout = created.body.rollout as { id: string };
  t.like(created.body.rollout, {
    percent: 10,
    state: 'active',
    failureThresholdPercent: 25,
    minDevicesForThreshold: 3,
    counts: { targeted: 0, updated: 0, updating: 0, failed: 0, rolledBack: 0, pending: 0 },
  });
  const path = `${api}/${rollout.id}`;
  t.like((await client.send('POST', `${path}/widen`, { percent: 5 })).body, {
    statusCode: 409,
    code: 'ROLLOUT_NARROWING',
  });
  t.like((await client.send('POST', `${path}/widen`, { percent: 30 })).body, {
    rollout: { percent: 30, state: 'active' },
  });
  t.like((await client.send('POST', `${path}/resume`)).body, {
    statusCode: 409,
    code: 'ROLLOUT_STATE',
  });
  t.like((await client.send('POST', `${path}/pause`)).body, {
    rollout: { state: 'paused', pausedReason: null },
  });
  t.like((await client.send('PATCH', path, { failureThresholdPercent: 40 })).body, {
    rollout: { failureThresholdPercent: 40, minDevicesForThreshold: 3 },
  });
  t.like((await client.send('POST', `${path}/resume`)).body, { rollout: { state: 'active' } });
  t.like((await client.send('POST', `${path}/cancel`)).body, { rollout: { state: 'cancelled' } });
  t.like((await client.send('POST', `${path}/cancel`)).body, {
    statusCode: 409,
    code: 'ROLLOUT_STATE',
  });
  t.like((await client.send('POST', `${api}/nope/pause`)).body, {
    statusCode: 404,
    code: 'ROLLOUT_NOT_FOUND',
  });

  // The operator API sees the same rows, and its roll-outs show on the dashboard.
  const viaOperator = await server.operator('POST', '/api/v1/rollouts', {
    board: 'rpi4',
    version: '1.0.0',
    percent: 100,
  });
  t.is(viaOperator.status, 201);
  const list = await client.get(api);
  t.deepEqual(
    (list.body.rollouts as { id: string; state: string }[]).map((entry) => [entry.id, entry.state]),
    [
      [viaOperator.body.id, 'completed'],
      [rollout.id, 'cancelled'],
    ],
  );
  t.like((await server.operator('GET', `/api/v1/rollouts/${rollout.id}`)).body, {
    state: 'cancelled',
  });

  const detail = await client.get(path);
  t.like(detail.body, { rollout: { id: rollout.id, state: 'cancelled' } });
  const samples = await until(
    async () => (await client.get(path)).body.samples as { percent: number }[],
    (list) => list.length >= 6,
  );
  t.true(samples.length >= 6, 'a sample at each change');
  t.deepEqual(samples[0], { ...samples[0], percent: 10, targeted: 0 });
  t.is(samples.at(-1)!.percent, 30);
});

test('the automatic pause: past the failure threshold, again only after a further failure', async (t) => {
  const { server, client } = await dashboardServer(t);
  const created = await client.send('POST', '/dashboard/api/rollouts', {
    board: 'rpi4',
    version: '1.1.0',
    percent: 99,
    failureThresholdPercent: 50,
    minDevicesForThreshold: 4,
  });
  const id = (created.body.rollout as { id: string }).id;
  const devices = (await fleet(server, 12)).filter(
    (device) => rolloutBucket(id, device.deviceId) < 99,
  );
  t.true(devices.length >= 7);
  const [a, b, c, d, e, f] = devices;
  const state = async () =>
    (await client.get(`/dashboard/api/rollouts/${id}`)).body.rollout as {
      state: string;
      pausedReason: string | null;
      counts: Record<string, number>;
    };
  const fail = (device: SimulatedDevice, reason = 'hash mismatch') =>
    device.checkIn(server.url, '1.0.0', { state: 'failed', targetVersion: '1.1.0', reason });

  await a!.checkIn(server.url, '1.1.0');
  await b!.checkIn(server.url, '1.1.0');
  await fail(c!);
  await server.app.rolloutMonitor.idle();
  t.is((await state()).state, 'active', '1 of 3 attempts: below the minimum');
  await d!.checkIn(server.url, '1.0.0', { state: 'rolled-back', targetVersion: '1.1.0' });
  const paused = await until(state, (rollout) => rollout.state === 'paused');
  t.is(paused.state, 'paused');
  t.is(paused.pausedReason, 'failure rate 50% (2 of 4) reached the 50% threshold');
  t.like(paused.counts, { updated: 2, failed: 1, rolledBack: 1 });

  t.like((await client.send('POST', `/dashboard/api/rollouts/${id}/resume`)).body, {
    rollout: { state: 'active', pausedReason: null },
  });
  await server.app.rolloutMonitor.sampleActive();
  await e!.checkIn(server.url, '1.1.0');
  await server.app.rolloutMonitor.idle();
  t.is((await state()).state, 'active', 'resumed above the threshold: the operator decided');
  await fail(f!, 'disk full');
  const again = await until(state, (rollout) => rollout.state === 'paused');
  t.is(again.pausedReason, 'failure rate 50% (3 of 6) reached the 50% threshold');
});

test("the automatic pause: an operator's resume above the threshold outlives a restart", async (t) => {
  const store = await openFleetStore({ dataDir: await tempDir(t, 'data') });
  t.teardown(() => store.close());
  const repo = await sharedRepository();
  const first = await dashboardServer(t, { repo, store });
  const created = await first.client.send('POST', '/dashboard/api/rollouts', {
    board: 'rpi4',
    version: '1.1.0',
    percent: 99,
    failureThresholdPercent: 50,
    minDevicesForThreshold: 4,
  });
  const id = (created.body.rollout as { id: string }).id;
  const devices = (await fleet(first.server, 12)).filter(
    (device) => rolloutBucket(id, device.deviceId) < 99,
  );
  t.true(devices.length >= 6);
  const [a, b, c, d, e, f] = devices;
  const fail = (device: SimulatedDevice, url: string) =>
    device.checkIn(url, '1.0.0', { state: 'failed', targetVersion: '1.1.0', reason: 'disk full' });
  await a!.checkIn(first.server.url, '1.1.0');
  await b!.checkIn(first.server.url, '1.1.0');
  await fail(c!, first.server.url);
  await fail(d!, first.server.url);
  await first.server.app.rolloutMonitor.idle();
  t.is((await store.rollout(id))!.state, 'paused');
  const resumed = await first.client.send('POST', `/dashboard/api/rollouts/${id}/resume`);
  t.like(resumed.body, { rollout: { state: 'active' } });
  await first.server.app.rolloutMonitor.idle();
  await first.server.close();

  // A new process on the same database: the resume still stands until a further failure.
  const second = await startServer(t, repo, { store });
  const state = async () => (await store.rollout(id))!.state;
  await second.app.rolloutMonitor.sampleActive();
  await second.app.rolloutMonitor.idle();
  t.is(await state(), 'active', 'not paused again by the failures the operator accepted');
  await e!.checkIn(second.url, '1.1.0');
  await second.app.rolloutMonitor.idle();
  t.is(await state(), 'active');
  await fail(f!, second.url);
  await until(state, (now) => now === 'paused');
  t.like(await store.rollout(id), {
    state: 'paused',
    pausedReason: 'failure rate 50% (3 of 6) reached the 50% threshold',
  });
});

/** Reads server-sent events from a stream until `count` have come. */
async function readEvents(
  response: Response,
  count: number,
): Promise<{ event: string; data: Record<string, unknown> }[]> {
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  const events: { event: string; data: Record<string, unknown> }[] = [];
  let buffer = '';
  while (events.length < count) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = /^event: (.*)$/m.exec(block)?.[1];
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (event && data) events.push({ event, data: JSON.parse(data) as Record<string, unknown> });
    }
  }
  reader.releaseLock();
  return events;
}

test('live events: the overview at connect and after a check-in; close does not hang', async (t) => {
  const { server, client } = await dashboardServer(t);
  const [device] = await fleet(server, 1);
  const stream = await fetch(`${server.url}/dashboard/api/events`, {
    headers: { cookie: client.cookie },
  });
  t.is(stream.status, 200);
  t.is(stream.headers.get('content-type'), 'text/event-stream; charset=utf-8');
  t.is(stream.headers.get('content-security-policy'), CSP);
  const [first] = await readEvents(stream, 1);
  t.like(first, { event: 'overview', data: { total: 1, byState: { notSeen: 1 } } });

  await device!.checkIn(server.url, '1.0.0');
  const [second] = await readEvents(stream, 1);
  t.like(second, { event: 'overview', data: { total: 1, byState: { notSeen: 0, upToDate: 1 } } });

  await client.send('POST', '/dashboard/api/rollouts', {
    board: 'rpi4',
    version: '1.1.0',
    percent: 20,
  });
  const next = await readEvents(stream, 1);
  t.like(next[0], { event: 'rollout', data: { version: '1.1.0', percent: 20 } });

  const started = Date.now();
  await server.app.close();
  t.true(Date.now() - started < 3000, 'an open event stream does not hold the close');

  const anonymous = await startServer(t, await sharedRepository());
  t.is((await fetch(`${anonymous.url}/dashboard/api/events`)).status, 401);
});

test('pages: index.html for page paths, assets, CSP; 503 while not built', async (t) => {
  const dir = await tempDir(t, 'dashboard-dist');
  const repo = await sharedRepository();
  const missing = await startServer(t, repo, { config: { dashboardDir: join(dir, 'none') } });
  const notBuilt = await fetch(`${missing.url}/dashboard/`);
  t.is(notBuilt.status, 503);
  t.regex(((await notBuilt.json()) as { message: string }).message, /npm run build -w ota-server/);

  await mkdir(join(dir, 'assets'));
  await writeFile(join(dir, 'index.html'), '<!doctype html><title>Fleet</title>');
  await writeFile(join(dir, 'assets', 'app.js'), 'console.log(1)');
  const server = await startServer(t, repo, { config: { dashboardDir: dir } });
  for (const path of [
    '/dashboard',
    '/dashboard/',
    '/dashboard/devices/pi-001',
    '/dashboard/rollouts',
  ]) {
    const page = await fetch(`${server.url}${path}`);
    t.is(page.status, 200, path);
    t.is(page.headers.get('content-type'), 'text/html; charset=utf-8');
    t.is(page.headers.get('content-security-policy'), CSP);
    t.is(page.headers.get('cache-control'), 'no-cache');
    t.regex(await page.text(), /Fleet/);
  }
  const asset = await fetch(`${server.url}/dashboard/assets/app.js?v=abc`);
  t.is(asset.status, 200);
  t.is(asset.headers.get('content-type'), 'text/javascript; charset=utf-8');
  t.regex(asset.headers.get('cache-control') ?? '', /immutable/);
  const again = await fetch(`${server.url}/dashboard/assets/app.js`, {
    headers: { 'if-none-match': asset.headers.get('etag')! },
  });
  t.is(again.status, 304);
  t.is((await fetch(`${server.url}/dashboard/assets/..%2Findex.html`)).status, 404);
  t.is((await fetch(`${server.url}/dashboard/assets/nope.js`)).status, 404);
  const unknownApi = await fetch(`${server.url}/dashboard/api/nope`);
  t.is(unknownApi.status, 404);
  t.is(unknownApi.headers.get('content-security-policy'), CSP);
});

// ---- `ota-server operator add|remove|list`: the dashboard's logins, in the fleet store ----

async function operatorCommand(argv: string[], data: string, stdin = '') {
  let out = '';
  let err = '';
  const sink = (write: (text: string) => void) =>
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        write(chunk.toString());
        done();
      },
    });
  const code = await runCli(['operator', ...argv, '--data', data], {
    out: sink((text) => (out += text)),
    err: sink((text) => (err += text)),
    env: {},
    input: Readable.from([stdin]),
  });
  return { code, out, err };
}

test('operator add reads the password from stdin; list; remove; clear refusals', async (t) => {
  const data = join(await tempDir(t, 'operators'), 'data');
  const added = await operatorCommand(['add', 'alice'], data, 'correct horse battery\nignored\n');
  t.is(added.code, 0, added.err);
  t.is(added.out, 'operator alice added\n');

  const again = await operatorCommand(['add', 'alice'], data, 'another good password\n');
  t.is(again.code, 1);
  t.regex(again.err, /operator alice exists already/);
  const weak = await operatorCommand(['add', 'bob'], data, 'short\n');
  t.is(weak.code, 1);
  t.regex(weak.err, /at least 12 characters/);
  t.is((await operatorCommand(['add', '../x'], data, 'correct horse battery\n')).code, 2);
  t.is((await operatorCommand(['add'], data)).code, 2);
  t.is((await operatorCommand(['frob'], data)).code, 2);

  const list = await operatorCommand(['list'], data);
  t.regex(list.out, /^alice {2}\(since \d{4}-/);

  const store = await openFleetStore({ dataDir: data });
  const stored = await store.operator('alice');
  await store.close();
  t.regex(stored!.passwordHash, /^scrypt\$32768\$8\$1\$/);
  t.true(await verifyPassword('correct horse battery', stored!.passwordHash));

  t.is((await operatorCommand(['remove', 'alice'], data)).code, 0);
  t.regex((await operatorCommand(['remove', 'alice'], data)).err, /no operator alice/);
  t.is((await operatorCommand(['list'], data)).out, 'no operators\n');
});
