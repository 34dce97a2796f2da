import test from 'ava';
import { createHash } from 'node:crypto';
import { bodySha256, deviceTokenClaims } from '@edge/formats';
import { numberPlaceholders } from '../src/fleet/postgres-database.js';
import { applyRolloutAction, desiredRollout, rolloutBucket } from '../src/fleet/rollout-policy.js';
import { ROLLOUT_GUARD_DEFAULTS, type Rollout } from '../src/fleet/store.js';
import { ifRangeHolds, noneMatch, parseRange } from '../src/http/byte-range.js';
import { compareSemver, newestFirst, parseSemver } from '../src/publish/semver.js';
import { bearerToken, TokenSet } from '../src/server/token-set.js';

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
