import test, { type ExecutionContext } from 'ava';
import { generateKeyPairSync } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { DEVICE_API_PATHS, type Ed25519PublicJwk } from '@edge/formats';
import { rolloutBucket } from '../src/fleet/rollout-policy.js';
import { SimulatedDevice } from './helpers/device.js';
import { newRepository, publishImage, tempDir } from './helpers/fixtures.js';
import { FLEET_TOKEN, startServer, type TestServer } from './helpers/test-server.js';

// Enrolment with a fleet token, then every way a signed device request can be wrong.

const CHECK_IN = DEVICE_API_PATHS.checkIn;

// One server for the file; each test enrols its own device.
let shared: Promise<TestServer> | undefined;
let enrolledCount = 0;
let repo: string | undefined;

async function enrolled(t: ExecutionContext) {
  shared ??= (async () => startServer(t, (repo = await newRepository(null)), { keepOpen: true }))();
  const server = await shared;
  const device = new SimulatedDevice(`pi-${String(++enrolledCount).padStart(4, '0')}`);
  t.is((await device.enroll(server.url, FLEET_TOKEN)).status, 201);
  return { server, device };
}

test.after.always(async () => {
  await (await shared)?.close();
  if (repo) await rm(dirname(repo), { recursive: true, force: true });
});

test('enrolment: 201, the same key again 200, another key 409, a bad fleet token 401', async (t) => {
  const server = await startServer(t, await newRepository(t));
  const device = new SimulatedDevice('pi-0001');
  t.deepEqual(await device.enroll(server.url, FLEET_TOKEN), {
    status: 201,
    body: { deviceId: 'pi-0001' },
    token: '',
  });
  t.is((await device.enroll(server.url, FLEET_TOKEN)).status, 200);
  const other = generateKeyPairSync('ed25519').publicKey.export({
    format: 'jwk',
  }) as Ed25519PublicJwk;
  const conflict = await device.enroll(server.url, FLEET_TOKEN, other);
  t.is(conflict.status, 409);
  t.is(conflict.body.code, 'DEVICE_KEY_CONFLICT');
  const refused = await new SimulatedDevice('pi-0002').enroll(
    server.url,
    'not-the-fleet-token-at-all',
  );
  t.is(refused.status, 401);
  t.is(refused.body.code, 'FLEET_TOKEN_INVALID');
  t.is(await server.store.deviceKey('pi-0002'), undefined);
});

test('enrolment refuses a key that is not an Ed25519 JWK', async (t) => {
  const server = await startServer(t, await newRepository(t));
  const device = new SimulatedDevice('pi-0001');
  const bad = await device.enroll(server.url, FLEET_TOKEN, {
    kty: 'EC',
    crv: 'P-256',
    x: device.publicJwk.x,
  } as unknown as Ed25519PublicJwk);
  t.is(bad.status, 400);
});

test('a well signed check-in is accepted', async (t) => {
  const { server, device } = await enrolled(t);
  const answer = await device.checkIn(server.url, '1.0.0');
  t.is(answer.status, 200);
  t.deepEqual(answer.body, { desired: null, app: null, checkInSeconds: 300 });
});

const refusals: [
  string,
  string,
  (device: SimulatedDevice, url: string) => ReturnType<SimulatedDevice['post']>,
][] = [
  [
    'no token',
    'AUTH_MISSING',
    async (_device, url) => {
      const response = await fetch(`${url}${CHECK_IN}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{}',
      });
      return {
        status: response.status,
        body: (await response.json()) as Record<string, unknown>,
        token: '',
      };
    },
  ],
  [
    'not a JWT',
    'AUTH_MALFORMED',
    (device, url) => device.post(url, CHECK_IN, device.checkInReport('1.0.0'), {}, 'abc.def'),
  ],
  [
    'a bad signature',
    'AUTH_BAD_SIGNATURE',
    async (device, url) => {
      const token = await device.token(
        'POST',
        CHECK_IN,
        JSON.stringify(device.checkInReport('1.0.0')),
      );
      const [header, payload, signature] = token.split('.');
      const flipped = `${signature!.startsWith('A') ? 'B' : 'A'}${signature!.slice(1)}`;
      return device.post(
        url,
        CHECK_IN,
        device.checkInReport('1.0.0'),
        {},
        `${header}.${payload}.${flipped}`,
      );
    },
  ],
  [
    'another key',
    'AUTH_BAD_SIGNATURE',
    (device, url) =>
      device.post(url, CHECK_IN, device.checkInReport('1.0.0'), {
        key: generateKeyPairSync('ed25519').privateKey,
      }),
  ],
  [
    'an unknown device',
    'AUTH_UNKNOWN_DEVICE',
    (device, url) =>
      device.post(url, CHECK_IN, device.checkInReport('1.0.0'), { claims: { sub: 'nobody' } }),
  ],
  [
    'an expired token',
    'AUTH_EXPIRED',
    (device, url) =>
      device.post(url, CHECK_IN, device.checkInReport('1.0.0'), {
        now: new Date(Date.now() - 10 * 60_000),
      }),
  ],
  [
    'a token from the future',
    'AUTH_NOT_YET_VALID',
    (device, url) =>
      device.post(url, CHECK_IN, device.checkInReport('1.0.0'), {
        now: new Date(Date.now() + 5 * 60_000),
      }),
  ],
  [
    'a token living longer than 5 minutes',
    'AUTH_LIFETIME_TOO_LONG',
    (device, url) => {
      const iat = Math.floor(Date.now() / 1000);
      return device.post(url, CHECK_IN, device.checkInReport('1.0.0'), {
        claims: { iat, exp: iat + 3600 },
      });
    },
  ],
  [
    'no jti',
    'AUTH_MALFORMED',
    (device, url) =>
      device.post(url, CHECK_IN, device.checkInReport('1.0.0'), { claims: { jti: undefined } }),
  ],
  [
    'a token for another path',
    'AUTH_WRONG_REQUEST',
    (device, url) =>
      device.post(url, CHECK_IN, device.checkInReport('1.0.0'), { path: DEVICE_API_PATHS.uplink }),
  ],
  [
    'a token for another method',
    'AUTH_WRONG_REQUEST',
    (device, url) => device.post(url, CHECK_IN, device.checkInReport('1.0.0'), { method: 'GET' }),
  ],
  [
    'a tampered body',
    'AUTH_BODY_MISMATCH',
    (device, url) =>
      device.post(url, CHECK_IN, device.checkInReport('1.0.0'), {
        bodySigned: JSON.stringify(device.checkInReport('0.9.0')),
      }),
  ],
  [
    'a token with no body hash',
    'AUTH_BODY_MISMATCH',
    (device, url) =>
      device.post(url, CHECK_IN, device.checkInReport('1.0.0'), {
        claims: { bodySha256: undefined },
      }),
  ],
];

for (const [what, code, send] of refusals) {
  test(`refused with 401 ${code}: ${what}`, async (t) => {
    const { server, device } = await enrolled(t);
    const answer = await send(device, server.url);
    t.is(answer.status, 401);
    t.is(answer.body.code, code);
    t.is((await server.store.device(device.deviceId, 10))?.checkIns.length, 0, 'nothing recorded');
  });
}

test('a replayed token is refused, and a refused token does not use up its id', async (t) => {
  const { server, device } = await enrolled(t);
  const report = device.checkInReport('1.0.0');
  const first = await device.post(server.url, CHECK_IN, report);
  t.is(first.status, 200);
  const replay = await device.post(server.url, CHECK_IN, report, {}, first.token);
  t.is(replay.status, 401);
  t.is(replay.body.code, 'AUTH_REPLAYED');

  const wrongPath = await device.post(server.url, CHECK_IN, report, {
    jti: 'fixed-id',
    path: '/elsewhere',
  });
  t.is(wrongPath.body.code, 'AUTH_WRONG_REQUEST');
  t.is((await device.post(server.url, CHECK_IN, report, { jti: 'fixed-id' })).status, 200);
});

test('the token is checked before the body: an unsigned bad body gets 401, a signed one 400', async (t) => {
  const { server, device } = await enrolled(t);
  const unsigned = await fetch(`${server.url}${CHECK_IN}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: '{"nonsense":true}',
  });
  t.is(unsigned.status, 401);
  const signed = await device.post(server.url, CHECK_IN, { nonsense: true });
  t.is(signed.status, 400);
  t.is(signed.body.code, 'BAD_REQUEST');
});

test('uplink: 202, kept with the device', async (t) => {
  const { server, device } = await enrolled(t);
  const answer = await device.post(server.url, DEVICE_API_PATHS.uplink, {
    module: 'temp',
    payload: { c: 21 },
  });
  t.deepEqual(
    { status: answer.status, body: answer.body },
    { status: 202, body: { accepted: true } },
  );
  const tampered = await device.post(
    server.url,
    DEVICE_API_PATHS.uplink,
    { module: 'temp', payload: 1 },
    {
      bodySigned: JSON.stringify({ module: 'temp', payload: 2 }),
    },
  );
  t.is(tampered.status, 401);
  const detail = await server.operator('GET', `/api/v1/devices/${device.deviceId}`);
  t.deepEqual(
    (detail.body.uplinks as { module: string; payload: unknown }[]).map(({ module, payload }) => ({
      module,
      payload,
    })),
    [{ module: 'temp', payload: { c: 21 } }],
  );
});

test('a device reporting another board than it enrolled with gets 409', async (t) => {
  const { server, device } = await enrolled(t);
  const answer = await device.post(server.url, CHECK_IN, {
    ...device.checkInReport('1.0.0'),
    board: 'qemu',
  });
  t.is(answer.status, 409);
  t.is(answer.body.code, 'BOARD_MISMATCH');
});

// ---- staged roll-outs as devices see them in their check-in answers, and the operator API ----

interface RolloutJson {
  id: string;
  version: string;
  percent: number;
  state: string;
  imageTarget: string;
}

async function publishedRepository(
  t: Parameters<typeof newRepository>[0] & object,
  versions: string[],
) {
  const repo = await newRepository(t);
  const files = await tempDir(t, 'images');
  for (const version of versions) {
    const path = join(files, `${version}.img`);
    await writeFile(path, `image ${version}`);
    await publishImage(repo, 'rpi4', version, path);
  }
  return repo;
}

async function fleetOf(server: TestServer, count: number): Promise<SimulatedDevice[]> {
  const devices = Array.from(
    { length: count },
    (_, n) => new SimulatedDevice(`pi-${String(n).padStart(4, '0')}`),
  );
  for (let i = 0; i < devices.length; i += 50) {
    await Promise.all(
      devices.slice(i, i + 50).map((device) => device.enroll(server.url, FLEET_TOKEN)),
    );
  }
  return devices;
}

/** Each device's desired version from one round of check-ins (null: none). */
async function checkInAll(server: TestServer, devices: SimulatedDevice[], version = '1.0.0') {
  const desired = new Map<string, string | null>();
  for (let i = 0; i < devices.length; i += 50) {
    await Promise.all(
      devices.slice(i, i + 50).map(async (device) => {
        const answer = await device.checkIn(server.url, version);
        if (answer.status !== 200)
          throw new Error(`check-in ${answer.status} ${JSON.stringify(answer.body)}`);
        const wanted = answer.body.desired as { version: string } | null;
        desired.set(device.deviceId, wanted?.version ?? null);
      }),
    );
  }
  return desired;
}

function count(desired: Map<string, string | null>, version: string | null): number {
  return [...desired.values()].filter((value) => value === version).length;
}

/** Devices checking in over HTTP: each one's answer is compared with its bucket. */
const FLEET_SIZE = 50;

test('a 50% roll-out covers the devices of its buckets, about half, 100% all of them, cancel reverts', async (t) => {
  const repo = await publishedRepository(t, ['1.0.0', '1.1.0']);
  const server = await startServer(t, repo);
  const devices = await fleetOf(server, FLEET_SIZE);

  t.is(count(await checkInAll(server, devices), null), FLEET_SIZE, 'no roll-out: nothing desired');

  const base = await server.operator('POST', '/api/v1/rollouts', {
    board: 'rpi4',
    version: '1.0.0',
    percent: 100,
  });
  t.is(base.status, 201);
  t.like(base.body, {
    version: '1.0.0',
    percent: 100,
    state: 'completed',
    imageTarget: 'rpi4/1.0.0/rootfs.ext4',
  });
  t.is(count(await checkInAll(server, devices), '1.0.0'), FLEET_SIZE);

  const created = await server.operator('POST', '/api/v1/rollouts', {
    board: 'rpi4',
    version: '1.1.0',
    percent: 50,
  });
  t.is(created.status, 201);
  const rollout = created.body as unknown as RolloutJson;
  t.is(rollout.state, 'active');
  const expected = devices.filter((device) => rolloutBucket(rollout.id, device.deviceId) < 50);
  const half = await checkInAll(server, devices);
  t.is(count(half, '1.1.0'), expected.length);
  t.true(expected.length > 0 && expected.length < FLEET_SIZE, `${expected.length} covered`);
  for (const device of expected) t.is(half.get(device.deviceId), '1.1.0');
  t.is(
    count(half, '1.0.0'),
    FLEET_SIZE - expected.length,
    'the rest stay on the completed release',
  );
  // About half: the buckets of 200 device ids for this roll-out (the server follows them, above).
  const ids = Array.from({ length: 200 }, (_, n) => `pi-${String(n).padStart(4, '0')}`);
  const covered = ids.filter((id) => rolloutBucket(rollout.id, id) < 50).length;
  t.true(covered > 70 && covered < 130, `${covered} of 200`);

  const widened = await server.operator('POST', `/api/v1/rollouts/${rollout.id}/widen`, {
    percent: 100,
  });
  t.like(widened.body, { percent: 100, state: 'completed' });
  t.is(count(await checkInAll(server, devices), '1.1.0'), FLEET_SIZE);

  const cancelled = await server.operator('POST', `/api/v1/rollouts/${rollout.id}/cancel`);
  t.like(cancelled.body, { state: 'cancelled' });
  t.is(
    count(await checkInAll(server, devices), '1.0.0'),
    FLEET_SIZE,
    'back to the release before it',
  );
});

test('pausing stops the spread without sending anyone back; resume goes on', async (t) => {
  const repo = await publishedRepository(t, ['1.0.0', '1.1.0']);
  const server = await startServer(t, repo);
  const devices = await fleetOf(server, 40);
  const created = await server.operator('POST', '/api/v1/rollouts', {
    board: 'rpi4',
    version: '1.1.0',
    percent: 60,
  });
  const rollout = created.body as unknown as RolloutJson;
  const covered = devices.filter((device) => rolloutBucket(rollout.id, device.deviceId) < 60);
  t.true(covered.length >= 2);
  const [updated, installing, ...notYet] = covered;

  t.like((await server.operator('POST', `/api/v1/rollouts/${rollout.id}/pause`)).body, {
    state: 'paused',
  });
  t.like((await updated!.checkIn(server.url, '1.1.0')).body, { desired: { version: '1.1.0' } });
  t.like(
    (
      await installing!.checkIn(server.url, '1.0.0', {
        state: 'downloading',
        targetVersion: '1.1.0',
        progress: 0.3,
      })
    ).body,
    { desired: { version: '1.1.0' } },
  );
  for (const device of notYet) t.is((await device.checkIn(server.url, '1.0.0')).body.desired, null);

  t.like((await server.operator('POST', `/api/v1/rollouts/${rollout.id}/resume`)).body, {
    state: 'active',
  });
  for (const device of notYet) {
    t.like((await device.checkIn(server.url, '1.0.0')).body, { desired: { version: '1.1.0' } });
  }
});

test('the operator API: token, published releases only, allowed changes, lists and history', async (t) => {
  const repo = await publishedRepository(t, ['1.0.0']);
  const server = await startServer(t, repo);

  const anonymous = await fetch(`${server.url}/api/v1/rollouts`);
  t.is(anonymous.status, 401);
  t.like(await anonymous.json(), { code: 'OPERATOR_TOKEN_INVALID' });
  const wrong = await fetch(`${server.url}/api/v1/devices`, {
    headers: { authorization: 'Bearer nope' },
  });
  t.is(wrong.status, 401);

  const unpublished = await server.operator('POST', '/api/v1/rollouts', {
    board: 'rpi4',
    version: '9.9.9',
    percent: 10,
  });
  t.is(unpublished.status, 422);
  t.is(unpublished.body.code, 'RELEASE_NOT_PUBLISHED');
  const otherBoard = await server.operator('POST', '/api/v1/rollouts', {
    board: 'qemu',
    version: '1.0.0',
    percent: 10,
  });
  t.is(otherBoard.status, 422);
  t.is(
    (
      await server.operator('POST', '/api/v1/rollouts', {
        board: 'rpi4',
        version: '1.0.0',
        percent: 101,
      })
    ).status,
    400,
  );

  const rollout = (
    await server.operator('POST', '/api/v1/rollouts', {
      board: 'rpi4',
      version: '1.0.0',
      percent: 20,
    })
  ).body as unknown as RolloutJson;
  const path = `/api/v1/rollouts/${rollout.id}`;
  t.like((await server.operator('POST', `${path}/widen`, { percent: 10 })).body, {
    code: 'ROLLOUT_NARROWING',
  });
  t.like((await server.operator('POST', `${path}/resume`)).body, { code: 'ROLLOUT_STATE' });
  t.like((await server.operator('POST', `${path}/widen`, { percent: 40 })).body, {
    percent: 40,
    state: 'active',
  });
  t.like((await server.operator('POST', `${path}/pause`)).body, { state: 'paused' });
  t.like((await server.operator('POST', `${path}/widen`, { percent: 50 })).body, {
    code: 'ROLLOUT_STATE',
  });
  t.like((await server.operator('POST', `${path}/cancel`)).body, { state: 'cancelled' });
  t.is((await server.operator('POST', `${path}/cancel`)).status, 409);
  t.is((await server.operator('POST', '/api/v1/rollouts/nope/pause')).status, 404);
  t.like((await server.operator('GET', path)).body, {
    id: rollout.id,
    state: 'cancelled',
    percent: 40,
  });
  const list = await server.operator('GET', '/api/v1/rollouts?board=rpi4');
  t.deepEqual(
    (list.body.rollouts as RolloutJson[]).map((entry) => entry.id),
    [rollout.id],
  );

  const devices = await fleetOf(server, 5);
  await devices[0]!.checkIn(server.url, '1.0.0');
  await devices[0]!.checkIn(server.url, '1.0.0', {
    state: 'failed',
    targetVersion: '1.1.0',
    reason: 'hash mismatch',
  });
  await devices[1]!.checkIn(server.url, '1.0.0');
  const failed = await server.operator('GET', '/api/v1/devices?state=failed');
  t.deepEqual(
    (failed.body.devices as { deviceId: string }[]).map((device) => device.deviceId),
    ['pi-0000'],
  );

  const pages: string[][] = [];
  let cursor: string | null = null;
  do {
    const page = await server.operator(
      'GET',
      `/api/v1/devices?board=rpi4&limit=2${cursor ? `&cursor=${cursor}` : ''}`,
    );
    pages.push((page.body.devices as { deviceId: string }[]).map((device) => device.deviceId));
    cursor = page.body.nextCursor as string | null;
  } while (cursor);
  t.deepEqual(pages, [['pi-0000', 'pi-0001'], ['pi-0002', 'pi-0003'], ['pi-0004']]);
  t.is((await server.operator('GET', '/api/v1/devices?cursor=%%%')).status, 400);

  const detail = await server.operator('GET', '/api/v1/devices/pi-0000');
  t.like(detail.body, {
    deviceId: 'pi-0000',
    board: 'rpi4',
    lastCheckIn: { version: '1.0.0', update: { state: 'failed', reason: 'hash mismatch' } },
  });
  t.deepEqual(
    (detail.body.checkIns as { update: { state: string } }[]).map(
      (checkIn) => checkIn.update.state,
    ),
    ['failed', 'idle'],
  );
  t.is((await server.operator('GET', '/api/v1/devices/nobody')).status, 404);
});
