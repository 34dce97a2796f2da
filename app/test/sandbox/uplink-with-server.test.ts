import test from 'ava';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEVICE_API_PATHS } from '@edge/formats';
import { freePort } from '../../../bench/lib/http-load.js';
import { loadConfig } from '../../src/config.js';
import { otaServer } from '../ota/fleet.js';
import { loadDeviceIdentity } from '../../src/ota/device-identity.js';
import { ServerClock } from '../../src/ota/server-clock.js';
import { UpdateServerClient } from '../../src/ota/update-server-client.js';
import { createUplinkSender } from '../../src/sandbox/uplink-sender.js';
import { guestWat, manifestFor, testRegistry, wat } from './sandbox-helpers.js';

// post_uplink end to end: a module's payload, signed with the device key, stored by the real
// update server (ota-server's own command line, in this process); another key is refused.

test('a module uplink reaches the update server signed by the device; another key is refused', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'edge-uplink-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const repo = join(dir, 'repo');
  await otaServer(['init', '--repo', repo]);
  const fleetTokenFile = join(dir, 'fleet-token');
  const operatorTokenFile = join(dir, 'operator-token');
  writeFileSync(fleetTokenFile, randomBytes(16).toString('hex'));
  writeFileSync(operatorTokenFile, randomBytes(16).toString('hex'));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  let stop: (signal: string) => void = () => {};
  const serving = otaServer(
    [
      ...['serve', '--repo', repo, '--port', String(port), '--data', join(dir, 'server-data')],
      ...['--fleet-token-file', fleetTokenFile, '--operator-token-file', operatorTokenFile],
      ...['--log-level', 'silent'],
    ],
    new Promise<string>((resolve) => (stop = resolve)),
  );
  t.teardown(async () => {
    stop('SIGTERM');
    await serving;
  });
  while (
    !(await fetch(`${url}/readyz`).then(
      (r) => r.ok,
      () => false,
    ))
  ) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }

  const config = loadConfig({
    env: {
      EDGE_OTA_SERVER_URL: url,
      EDGE_OTA_FLEET_TOKEN_FILE: fleetTokenFile,
      EDGE_OTA_DATA_DIR: join(dir, 'device'),
      EDGE_OTA_BOARD: 'qemu',
    },
  });
  const sender = createUplinkSender(config.ota)!;
  const registry = testRegistry({}, { uplink: sender });
  t.teardown(() => registry.close());
  const guest = wat(guestWat());
  const schema = {
    type: 'object',
    properties: { celsius: { type: 'number' } },
    required: ['celsius'],
  };
  await registry.install(
    manifestFor('thermo', guest, { capabilities: { uplink: { schema } } }),
    guest,
  );
  const payload = new TextEncoder().encode('{"celsius": 47.2}');
  t.like(await registry.call('thermo', 'uplink', { kind: 'bytes', bytes: payload }), { value: 0 });
  await sender.idle();
  t.deepEqual(
    registry.log.lines.filter((line) => line.message === 'uplink not delivered'),
    [],
  );

  const identity = await loadDeviceIdentity(join(dir, 'device'));
  const operatorToken = readFileSync(operatorTokenFile, 'utf8').trim();
  const record = (await (
    await fetch(`${url}/api/v1/devices/${identity.deviceId}`, {
      headers: { authorization: `Bearer ${operatorToken}` },
    })
  ).json()) as { uplinks: Array<{ module: string; payload: unknown }> };
  t.like(record.uplinks[0], { module: 'thermo', payload: { celsius: 47.2 } });

  // The same device id, another key: the server checks the signature against the enrolled key.
  const impostor = await loadDeviceIdentity(join(dir, 'impostor'), identity.deviceId);
  const client = new UpdateServerClient(url, impostor, async () => 'not used');
  const refused = await client
    .signedPost(DEVICE_API_PATHS.uplink, { module: 'thermo', payload: { celsius: -1 } })
    .then(
      () => undefined,
      (error: unknown) => error as { status?: number; message: string },
    );
  t.is(refused?.status, 401, refused?.message);
  const after = (await (
    await fetch(`${url}/api/v1/devices/${identity.deviceId}`, {
      headers: { authorization: `Bearer ${operatorToken}` },
    })
  ).json()) as { uplinks: unknown[] };
  t.is(after.uplinks.length, 1, 'the forged uplink was not stored');

  // The device itself with its clock in 1970 (a Pi 4 without a battery-backed clock or NTP): the
  // first token is refused, the answer's Date shows the server's time, the second one lands.
  const stuckAt = Date.parse('1970-01-01T00:16:08Z');
  const lost = new UpdateServerClient(
    url,
    identity,
    async () => 'not used',
    new ServerClock(() => stuckAt),
  );
  await lost.signedPost(DEVICE_API_PATHS.uplink, { module: 'thermo', payload: { celsius: 3 } });
  t.true(Math.abs(lost.clock.offsetMs - (Date.now() - stuckAt)) < 5000);
  const latest = (await (
    await fetch(`${url}/api/v1/devices/${identity.deviceId}`, {
      headers: { authorization: `Bearer ${operatorToken}` },
    })
  ).json()) as { uplinks: Array<{ payload: unknown }> };
  t.deepEqual(latest.uplinks[0]?.payload, { celsius: 3 });
});
