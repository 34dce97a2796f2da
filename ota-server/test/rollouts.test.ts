import test from 'ava';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { rolloutBucket } from '../src/fleet/rollout-policy.js';
import { SimulatedDevice } from './helpers/device.js';
import { newRepository, publishImage, tempDir } from './helpers/fixtures.js';
import { FLEET_TOKEN, startServer, type TestServer } from './helpers/test-server.js';

// Staged roll-outs as devices see them in their check-in answers, and the operator API.

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
