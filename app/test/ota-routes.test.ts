import test from 'ava';
import { testServer } from './helpers.js';

test('the download limit changes at run time, from the device itself only', async (t) => {
  const app = await testServer({});
  const status = await app.inject('/api/v1/ota/status');
  t.like(status.json(), { enabled: false, bandwidth: { bytesPerSecond: 0 } });
  const local = await app.inject({
    method: 'PUT',
    url: '/api/v1/ota/bandwidth',
    payload: { bytesPerSecond: 250_000, burstBytes: 65_536 },
  });
  t.deepEqual(local.json(), { bytesPerSecond: 250_000, burstBytes: 65_536 });
  t.is(app.downloadBucket.rate, 250_000);
  const remote = await app.inject({
    method: 'PUT',
    url: '/api/v1/ota/bandwidth',
    payload: { bytesPerSecond: 1 },
    remoteAddress: '192.0.2.7',
  });
  t.is(remote.statusCode, 403);
  t.is(app.downloadBucket.rate, 250_000);
  const bad = await app.inject({
    method: 'PUT',
    url: '/api/v1/ota/bandwidth',
    payload: { bytesPerSecond: -1 },
  });
  t.is(bad.statusCode, 400);
});
