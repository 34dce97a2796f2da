import test from 'ava';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { bodySha256, deviceTokenClaims } from '@edge/formats';
import { seededRandom } from '../../app/test/ota/seeded.js';
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
import { numberPlaceholders } from '../src/fleet/postgres-database.js';
import { rolloutGuard } from '../src/fleet/rollout-guard.js';
import { applyRolloutAction, desiredRollout, rolloutBucket } from '../src/fleet/rollout-policy.js';
import { MIGRATIONS } from '../src/fleet/schema.js';
import { SqlFleetStore } from '../src/fleet/sql-fleet-store.js';
import { SqliteDatabase } from '../src/fleet/sqlite-database.js';
import { ROLLOUT_GUARD_DEFAULTS, type Rollout } from '../src/fleet/store.js';
import { versionSortKey } from '../src/fleet/version-sort-key.js';
import { ifRangeHolds, noneMatch, parseRange } from '../src/http/byte-range.js';
import { compareSemver, newestFirst, parseSemver } from '../src/publish/semver.js';
import { TokenSet, bearerToken } from '../src/server/token-set.js';
import { tempDir } from './helpers/fixtures.js';
import { checkRolloutCounts } from './helpers/rollout-counts-property.js';

test('Range: the three forms, clamping, and what is ignored or unsatisfiable', (t) => {
  t.deepEqual(parseRange('bytes=0-9', 100), { kind: 'range', range: { start: 0, end: 9 } });
  t.deepEqual(parseRange('bytes=90-', 100), { kind: 'range', range: { start: 90, end: 99 } });
  t.deepEqual(parseRange('bytes=-10', 100), { kind: 'range', range: { start: 90, end: 99 } });
  t.deepEqual(parseRange('bytes=-1000', 100), { kind: 'range', range: { start: 0, end: 99 } });
  t.deepEqual(parseRange('bytes=50-1000', 100), { kind: 'range', range: { start: 50, end: 99 } });
  for (const header of ['bytes=100-', 'bytes=-0', 'bytes=200-300']) {
    t.deepEqual(parseRange(header, 100), { kind: 'unsatisfiable' }, header);
  }
  t.deepEqual(parseRange('bytes=0-', 0), { kind: 'unsatisfiable' });
  for (const header of [
    undefined,
    'bytes=9-1',
    'bytes=0-1,3-4',
    'items=0-1',
    'bytes=-',
    'bytes=a-b',
  ]) {
    t.deepEqual(parseRange(header, 100), { kind: 'none' }, String(header));
  }
});

test('validators: If-None-Match compares weakly, If-Range strongly', (t) => {
  t.true(noneMatch('"a"', '"a"'));
  t.true(noneMatch('W/"a"', '"a"'));
  t.true(noneMatch('"b", "a"', '"a"'));
  t.true(noneMatch('*', '"a"'));
  t.false(noneMatch('"b"', '"a"'));
  t.false(noneMatch(undefined, '"a"'));
  const date = 'Tue, 01 Jan 2030 00:00:00 GMT';
  t.true(ifRangeHolds(undefined, '"a"', date));
  t.true(ifRangeHolds('"a"', '"a"', date));
  t.false(ifRangeHolds('W/"a"', '"a"', date));
  t.false(ifRangeHolds('"b"', '"a"', date));
  t.true(ifRangeHolds(date, '"a"', date));
  t.false(ifRangeHolds('Mon, 31 Dec 2029 00:00:00 GMT', '"a"', date));
});

test('semver: parsing and precedence as the specification orders it', (t) => {
  t.is(parseSemver('1.0'), undefined);
  t.is(parseSemver('v1.0.0'), undefined);
  t.is(parseSemver('01.0.0'), undefined);
  t.truthy(parseSemver('1.0.0-rc.1+build.5'));
  const ordered = [
    '1.0.0-alpha',
    '1.0.0-alpha.1',
    '1.0.0-alpha.beta',
    '1.0.0-beta',
    '1.0.0-beta.2',
    '1.0.0-beta.11',
    '1.0.0-rc.1',
    '1.0.0',
    '1.0.1',
    '1.10.0',
    '2.0.0',
  ];
  for (let i = 1; i < ordered.length; i++) {
    t.true(
      compareSemver(parseSemver(ordered[i - 1]!)!, parseSemver(ordered[i]!)!) < 0,
      `${ordered[i - 1]} < ${ordered[i]}`,
    );
  }
  t.is(compareSemver(parseSemver('1.0.0+a')!, parseSemver('1.0.0+b')!), 0);
  t.deepEqual(
    newestFirst([
      { version: '1.2.0' },
      { version: 'junk' },
      { version: '1.10.0' },
      { version: '1.9.9' },
    ]).map((v) => v.version),
    ['1.10.0', '1.9.9', '1.2.0'],
  );
});

test('roll-out buckets: SHA-256 of id:device, first 4 bytes big-endian, mod 100', (t) => {
  const expected = createHash('sha256').update('r1:pi-1').digest().readUInt32BE(0) % 100;
  t.is(rolloutBucket('r1', 'pi-1'), expected);
  const buckets = Array.from({ length: 10_000 }, (_, n) => rolloutBucket('r1', `pi-${n}`));
  const below50 = buckets.filter((bucket) => bucket < 50).length;
  t.true(below50 > 4800 && below50 < 5200, String(below50));
});

test('desired roll-out: newest covering first, completed covers all, paused keeps only its own', (t) => {
  const at = new Date(0);
  const rollout = (
    id: string,
    version: string,
    percent: number,
    state: Rollout['state'],
  ): Rollout => ({
    id,
    board: 'rpi4',
    version,
    percent,
    state,
    createdAt: at,
    updatedAt: at,
    ...ROLLOUT_GUARD_DEFAULTS,
    pausedReason: null,
  });
  const inside = (id: string) =>
    Array.from({ length: 200 }, (_, n) => `pi-${n}`).find((d) => rolloutBucket(id, d) < 10)!;
  const device = inside('new');
  const base = rollout('base', '1.0.0', 100, 'completed');
  t.is(
    desiredRollout([rollout('new', '1.1.0', 10, 'active'), base], {
      deviceId: device,
      version: '1.0.0',
    })?.id,
    'new',
  );
  t.is(
    desiredRollout([rollout('new', '1.1.0', 0, 'active'), base], {
      deviceId: device,
      version: '1.0.0',
    })?.id,
    'base',
  );
  t.is(
    desiredRollout([rollout('new', '1.1.0', 10, 'paused'), base], {
      deviceId: device,
      version: '1.0.0',
    })?.id,
    'base',
  );
  t.is(
    desiredRollout([rollout('new', '1.1.0', 10, 'paused'), base], {
      deviceId: device,
      version: '1.1.0',
    })?.id,
    'new',
  );
  t.is(
    desiredRollout([rollout('new', '1.1.0', 10, 'paused')], {
      deviceId: device,
      version: '1.0.0',
      targetVersion: '1.1.0',
    })?.id,
    'new',
  );
  t.is(
    desiredRollout([rollout('new', '1.1.0', 100, 'cancelled')], {
      deviceId: device,
      version: '1.0.0',
    }),
    undefined,
  );
  t.is(desiredRollout([], { deviceId: device, version: '1.0.0' }), undefined);
});

test('roll-out actions: what each state allows', (t) => {
  t.like(applyRolloutAction({ state: 'active', percent: 10 }, 'widen', 100), {
    ok: true,
    state: 'completed',
    percent: 100,
  });
  t.like(applyRolloutAction({ state: 'active', percent: 10 }, 'pause'), {
    ok: true,
    state: 'paused',
  });
  t.like(applyRolloutAction({ state: 'paused', percent: 10 }, 'resume'), {
    ok: true,
    state: 'active',
  });
  t.like(applyRolloutAction({ state: 'completed', percent: 100 }, 'cancel'), {
    ok: true,
    state: 'cancelled',
  });
  for (const [state, action] of [
    ['paused', 'widen'],
    ['active', 'resume'],
    ['completed', 'pause'],
    ['cancelled', 'cancel'],
  ] as const) {
    t.false(applyRolloutAction({ state, percent: 10 }, action, 20).ok, `${state} ${action}`);
  }
});

test('token sets hold hashes; a token may be given by its hash; short tokens are refused', (t) => {
  const token = 'a-long-enough-fleet-token';
  const hash = createHash('sha256').update(token).digest('hex');
  const set = TokenSet.fromLines(
    `# fleet\n\nsha256:${hash}\nanother-long-enough-token\n`,
    'tokens',
  );
  t.is(set.size, 2);
  t.true(set.accepts(token));
  t.true(set.accepts('another-long-enough-token'));
  t.false(set.accepts('nope'));
  t.false(set.accepts(undefined));
  t.false(set.accepts(''));
  t.throws(() => TokenSet.fromLines('short\n', 'tokens'), {
    message: /tokens line 1: a token needs at least 16/,
  });
  t.is(bearerToken('Bearer abc'), 'abc');
  t.is(bearerToken('bearer  abc '), 'abc');
  t.is(bearerToken('Basic abc'), undefined);
});

test('PostgreSQL placeholders are numbered in order', (t) => {
  t.is(numberPlaceholders('SELECT ? WHERE a = ? AND b = ?'), 'SELECT $1 WHERE a = $2 AND b = $3');
});

test('device token claims: method, path, body hash, lifetime capped at 5 minutes', (t) => {
  const now = new Date(1_700_000_000_500);
  const claims = deviceTokenClaims({
    deviceId: 'pi-1',
    method: 'post',
    path: '/api/v1/device/check-in',
    body: '{"a":1}',
    jti: 'j1',
    now,
    lifetimeSeconds: 3600,
  });
  t.deepEqual(claims, {
    sub: 'pi-1',
    iat: 1_700_000_000,
    exp: 1_700_000_300,
    jti: 'j1',
    htm: 'POST',
    htu: '/api/v1/device/check-in',
    bodySha256: createHash('sha256').update('{"a":1}').digest('base64url'),
  });
  t.is(bodySha256(Buffer.from('{"a":1}')), claims.bodySha256!);
  t.false(
    'bodySha256' in deviceTokenClaims({ deviceId: 'd', method: 'GET', path: '/x', jti: 'j' }),
  );
});

// ---- the dashboard's and the fleet store's pieces ----

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

test('roll-out counts kept by check-ins equal a recount after random steps (SQLite); buckets only for the counted', async (t) => {
  const dir = await tempDir(t, 'counts');
  let db: SqliteDatabase | undefined;
  for (const seed of [1, 2, 3]) {
    db = new SqliteDatabase(join(dir, `fleet-${seed}.sqlite`));
    const store = await SqlFleetStore.open(db);
    t.teardown(() => store.close());
    await checkRolloutCounts(t, store, { seed, steps: 150 });
  }
  // Buckets of ended roll-outs are deleted when they end: what is left is the counted ones'.
  const left = await db!.query<{ state: string }>(
    'SELECT DISTINCT r.state FROM rollout_buckets b JOIN rollouts r ON r.id = b.rollout_id',
  );
  t.true(left.every((row) => row.state === 'active' || row.state === 'paused'));
  const [orphans] = await db!.query<{ n: number }>(
    'SELECT COUNT(*) AS n FROM rollout_buckets WHERE rollout_id NOT IN (SELECT id FROM rollouts)',
  );
  t.is(orphans!.n, 0);
});

test('version sort keys order as semver precedence; other versions first, by their text', (t) => {
  const random = seededRandom(7);
  const pick = <T>(items: readonly T[]) => items[Math.floor(random() * items.length)]!;
  const number = () => pick(['0', '1', '2', '9', '10', '11', '100', '9007199254740991']);
  const identifier = () => pick(['alpha', 'beta', 'rc', 'a-b', 'x1', '1a', '-', number()]);
  const versions = ['latest', 'v1.0.0', '1.0', '1.0.0', '1.0.0+build.5'];
  for (let n = 0; n < 400; n++) {
    const prerelease =
      random() < 0.5
        ? ''
        : `-${Array.from({ length: 1 + Math.floor(random() * 3) }, identifier).join('.')}`;
    versions.push(`${number()}.${number()}.${number()}${prerelease}`);
  }
  // Each version parsed and keyed once: the 400² comparisons below only compare.
  const parsed = new Map(versions.map((version) => [version, parseSemver(version)]));
  const keys = new Map(versions.map((version) => [version, Buffer.from(versionSortKey(version))]));
  const expected = (a: string, b: string) => {
    const x = parsed.get(a);
    const y = parsed.get(b);
    if (x && y) return compareSemver(x, y);
    if (x || y) return x ? 1 : -1;
    return a < b ? -1 : a > b ? 1 : 0;
  };
  const bytes = (a: string, b: string) => Math.sign(Buffer.compare(keys.get(a)!, keys.get(b)!));
  for (const a of versions) {
    for (const b of versions) {
      if (bytes(a, b) !== expected(a, b)) t.fail(`${a} vs ${b}`);
    }
  }
  t.true(versionSortKey('1.9.0') < versionSortKey('1.10.0'));
  t.true(versionSortKey('1.0.0-rc.1') < versionSortKey('1.0.0'));
});

test('migration 4: counts, buckets and version keys for a fleet stored before it', async (t) => {
  const file = join(await tempDir(t, 'migrate'), 'fleet.sqlite');
  const old = new SqliteDatabase(file);
  old.defineFunction('rollout_bucket', (r, d) => rolloutBucket(String(r), String(d)));
  await old.migrate(MIGRATIONS.filter((migration) => migration.version <= 3));
  const ids = Array.from({ length: 40 }, (_, n) => `pi-${n}`);
  for (const [n, id] of ids.entries()) {
    await old.execute(
      `INSERT INTO devices (device_id, board, public_key_x, enrolled_at, last_seen_at, version,
         update_state, target_version) VALUES (?, 'rpi4', 'k', 0, 1, ?, ?, ?)`,
      [id, n % 2 ? '1.10.0' : '1.9.0', n % 4 === 0 ? 'failed' : 'idle', '1.10.0'],
    );
  }
  const insert = `INSERT INTO rollouts (id, board, version, percent, state, created_at, updated_at)
    VALUES (?, 'rpi4', '1.10.0', ?, ?, 0, 0)`;
  await old.execute(insert, ['live', 50, 'active']);
  await old.execute(insert, ['ended', 50, 'cancelled']);
  await old.execute(
    "INSERT INTO rollout_buckets (rollout_id, device_id, bucket) VALUES ('ended', 'pi-1', 1)",
  );
  await old.close();

  const db = new SqliteDatabase(file);
  const store = await SqlFleetStore.open(db);
  t.teardown(() => store.close());
  const inside = (id: string) => ids.filter((device) => rolloutBucket(id, device) < 50);
  for (const id of ['live', 'ended']) {
    const members = inside(id);
    const updated = members.filter((device) => Number(device.slice(3)) % 2 === 1).length;
    const failed = members.filter((device) => Number(device.slice(3)) % 4 === 0).length;
    t.deepEqual(await store.rolloutCounts({ id }), {
      targeted: members.length,
      updated,
      updating: 0,
      failed,
      rolledBack: 0,
      pending: members.length - updated - failed,
    });
  }
  const buckets = await db.query<{ rollout_id: string; n: number }>(
    'SELECT rollout_id, COUNT(*) AS n FROM rollout_buckets GROUP BY rollout_id',
  );
  t.deepEqual(buckets, [{ rollout_id: 'live', n: 40 }]);
  const page = await store.devicePage({
    sort: 'version',
    order: 'desc',
    offset: 0,
    limit: 1,
    notSeenBefore: new Date(0),
  });
  t.is(page.devices[0]!.version, '1.10.0', 'keys filled in for versions stored before');
  // The triggers work on the migrated database.
  await store.enrollDevice({ deviceId: 'late', board: 'rpi4', publicKeyX: 'k' }, new Date());
  t.is(
    (await store.rolloutCounts({ id: 'live' })).targeted,
    inside('live').length + (rolloutBucket('live', 'late') < 50 ? 1 : 0),
  );
});
