import test from 'ava';
import { join } from 'node:path';
import { LoginThrottle } from '../src/dashboard/login-throttle.js';
import {
  dummyPasswordHash,
  hashPassword,
  verifyPassword,
  weakPasswordReason,
} from '../src/dashboard/password-hash.js';
import {
  SESSION_IDLE_MS,
  SESSION_LIFETIME_MS,
  Sessions,
  sameSecret,
  sessionIdHash,
} from '../src/dashboard/sessions.js';
import { deviceCategory } from '../src/fleet/device-category.js';
import { rolloutGuard } from '../src/fleet/rollout-guard.js';
import { SqlFleetStore } from '../src/fleet/sql-fleet-store.js';
import { SqliteDatabase } from '../src/fleet/sqlite-database.js';
import { tempDir } from './helpers/fixtures.js';

const settings = { failureThresholdPercent: 10, minDevicesForThreshold: 10 };

test('rollout guard: no attempts, too few attempts, below, exactly at and past the threshold', (t) => {
  t.like(rolloutGuard({ updated: 0, failed: 0, rolledBack: 0 }, settings), {
    pause: false,
    reason: 'no device attempted the update yet',
  });
  t.like(rolloutGuard({ updated: 0, failed: 5, rolledBack: 4 }, settings), {
    pause: false,
    reason: '9 of 10 attempts needed before the failure rate counts',
  });
  t.like(rolloutGuard({ updated: 28, failed: 2, rolledBack: 0 }, settings), {
    pause: false,
    reason: 'failure rate 7% (2 of 30) below the 10% threshold',
  });
  t.deepEqual(rolloutGuard({ updated: 27, failed: 2, rolledBack: 1 }, settings), {
    pause: true,
    failurePercent: 10,
    reason: 'failure rate 10% (3 of 30) reached the 10% threshold',
  });
  t.like(rolloutGuard({ updated: 23, failed: 3, rolledBack: 4 }, settings), {
    pause: true,
    reason: 'failure rate 23% (7 of 30) reached the 10% threshold',
  });
  // 1 of 3 is 33.33…%: the comparison is exact, not rounded.
  const third = { failureThresholdPercent: 34, minDevicesForThreshold: 3 };
  t.false(rolloutGuard({ updated: 2, failed: 1, rolledBack: 0 }, third).pause);
  t.true(
    rolloutGuard(
      { updated: 2, failed: 1, rolledBack: 0 },
      { ...third, failureThresholdPercent: 33 },
    ).pause,
  );
  t.true(
    rolloutGuard(
      { updated: 0, failed: 10, rolledBack: 0 },
      { ...settings, failureThresholdPercent: 100 },
    ).pause,
  );
});

test('password hash: scrypt N=2^15 r=8 p=1, salted, verified; others do not match', async (t) => {
  const hash = await hashPassword('correct horse battery');
  t.regex(hash, /^scrypt\$32768\$8\$1\$[A-Za-z0-9_-]{22}\$[A-Za-z0-9_-]{43}$/);
  t.true(await verifyPassword('correct horse battery', hash));
  t.false(await verifyPassword('correct horse batterY', hash));
  t.false(await verifyPassword('x', 'scrypt$1048577$8$1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA'));
  t.false(await verifyPassword('x', 'md5$whatever'));
  t.regex(await dummyPasswordHash(), /^scrypt\$32768\$8\$1\$/);
  t.is(await dummyPasswordHash(), await dummyPasswordHash(), 'made once');
  const cheap = { N: 1024, r: 8, p: 1 };
  const cheapHash = await hashPassword('pw', cheap);
  t.true(await verifyPassword('pw', cheapHash), 'the cost comes from the stored hash');
  t.not(await hashPassword('pw', cheap), cheapHash, 'a new salt each time');
  t.truthy(weakPasswordReason('short'));
  t.truthy(weakPasswordReason('aaaaaaaaaaaaaaaa'));
  t.is(weakPasswordReason('correct horse battery'), undefined);
});

test('login throttle: per key, a sliding window, the wait until the oldest failure leaves', (t) => {
  let now = 1_000_000;
  const throttle = new LoginThrottle({ limit: 3, windowMs: 60_000, now: () => now });
  const keys = ['user:alice', 'address:1.2.3.4'];
  throttle.failed(keys);
  now += 10_000;
  throttle.failed(keys);
  t.is(throttle.retryAfterSeconds(keys), 0);
  now += 10_000;
  throttle.failed(['user:alice', 'address:5.6.7.8']);
  t.is(throttle.retryAfterSeconds(['user:alice']), 40, 'first failure leaves at +60 s');
  t.is(throttle.retryAfterSeconds(['address:1.2.3.4']), 0);
  t.is(throttle.retryAfterSeconds(['user:bob', 'address:1.2.3.4']), 0);
  throttle.failed(['user:bob', 'address:1.2.3.4']);
  t.is(throttle.retryAfterSeconds(['user:bob', 'address:1.2.3.4']), 40, 'the address is at 3');
  now += 40_001;
  t.is(throttle.retryAfterSeconds(['user:alice']), 0);
  throttle.succeeded('user:alice');
  t.is(throttle.retryAfterSeconds(['address:1.2.3.4']), 0);
});

test('sessions: hashed ids, CSRF token, idle and absolute expiry', async (t) => {
  const store = await SqlFleetStore.open(
    new SqliteDatabase(join(await tempDir(t, 'sessions'), 'fleet.sqlite')),
  );
  t.teardown(() => store.close());
  let now = new Date('2030-01-01T00:00:00Z').getTime();
  const sessions = new Sessions(store, () => new Date(now));
  await store.addOperator({ username: 'alice', passwordHash: 'x', createdAt: new Date(now) });
  const { token, session } = await sessions.create('alice');
  t.is(session.idHash, sessionIdHash(token));
  t.not(session.idHash, token);
  t.is((await sessions.find(token))?.username, 'alice');
  t.is(await sessions.find('forged'), undefined);
  t.is(await sessions.find(undefined), undefined);
  t.true(sameSecret(session.csrfToken, session.csrfToken));
  t.false(sameSecret(session.csrfToken, `${session.csrfToken}x`));

  // Used every 11 hours: alive for 7 days, then over.
  for (let hours = 11; hours < 7 * 24; hours += 11) {
    now += 11 * 3600_000;
    t.truthy(await sessions.find(token), `after ${hours} h`);
  }
  now = session.createdAt.getTime() + SESSION_LIFETIME_MS + 1;
  t.is(await sessions.find(token), undefined, 'past 7 days');

  const second = await sessions.create('alice');
  now += SESSION_IDLE_MS + 1;
  t.is(await sessions.find(second.token), undefined, 'idle 12 h');

  const third = await sessions.create('alice');
  t.true(await store.removeOperator('alice'));
  t.is(await sessions.find(third.token), undefined, 'an operator removed: sessions gone');
});

test('device categories: the first that applies', (t) => {
  const cutoff = new Date(1_000_000);
  const seen = new Date(2_000_000);
  t.is(deviceCategory(null, null, cutoff), 'notSeen');
  t.is(deviceCategory(new Date(999_999), 'failed', cutoff), 'notSeen');
  t.is(deviceCategory(seen, 'failed', cutoff), 'failed');
  t.is(deviceCategory(seen, 'rolled-back', cutoff), 'rolledBack');
  for (const state of ['downloading', 'applying', 'verifying', 'rebooting'] as const) {
    t.is(deviceCategory(seen, state, cutoff), 'updating');
  }
  t.is(deviceCategory(seen, 'committed', cutoff), 'upToDate');
  t.is(deviceCategory(seen, 'idle', cutoff), 'upToDate');
});
