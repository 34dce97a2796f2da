import test, { type ExecutionContext } from 'ava';
import { generateKeyPairSync } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { DEVICE_API_PATHS, type Ed25519PublicJwk } from '@edge/formats';
import { SimulatedDevice } from './helpers/device.js';
import { newRepository } from './helpers/fixtures.js';
import { FLEET_TOKEN, startServer, type TestServer } from './helpers/test-server.js';

// Enrolment with a fleet token, then every way a signed device request can be wrong.

const CHECK_IN = DEVICE_API_PATHS.checkIn;

// One server for the file; each test enrols its own device.
let shared: Promise<TestServer> | undefined;
let devices = 0;
let repo: string | undefined;

async function enrolled(t: ExecutionContext) {
  shared ??= (async () => startServer(t, (repo = await newRepository(null)), { keepOpen: true }))();
  const server = await shared;
  const device = new SimulatedDevice(`pi-${String(++devices).padStart(4, '0')}`);
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
