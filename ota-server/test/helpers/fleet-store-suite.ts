import test from 'ava';
import type { ExecutionContext } from 'ava';
import { rolloutBucket } from '../../src/fleet/rollout-policy.js';
import type { UpdateReport } from '@edge/formats';
import { ROLLOUT_GUARD_DEFAULTS, type FleetStore, type Rollout } from '../../src/fleet/store.js';
import { checkRolloutCounts } from './rollout-counts-property.js';

/** Opens a fresh, empty store; reopen() opens the same database again (migrations rerun). */
export type StoreOpener = (
  t: ExecutionContext,
) => Promise<{ store: FleetStore; reopen: () => Promise<FleetStore> }>;

const key = (n: number) => `${String(n).padStart(2, '0')}${'x'.repeat(41)}`;

function rollout(id: string, board: string, version: string, percent: number, at: number): Rollout {
  return {
    id,
    board,
    version,
    percent,
    state: percent >= 100 ? 'completed' : 'active',
    createdAt: new Date(at),
    updatedAt: new Date(at),
    ...ROLLOUT_GUARD_DEFAULTS,
    pausedReason: null,
  };
}

/** One suite, registered once per backend: SQLite and PostgreSQL must behave the same. */
export function fleetStoreSuite(backend: string, open: StoreOpener): void {
  const name = (what: string) => `${backend}: ${what}`;

  test(
    name('enrolment: created, same key again, another key or board is a conflict'),
    async (t) => {
      const { store } = await open(t);
      const at = new Date(1_700_000_000_000);
      t.is(
        await store.enrollDevice({ deviceId: 'd1', board: 'rpi4', publicKeyX: key(1) }, at),
        'created',
      );
      t.is(
        await store.enrollDevice({ deviceId: 'd1', board: 'rpi4', publicKeyX: key(1) }, at),
        'same',
      );
      t.is(
        await store.enrollDevice({ deviceId: 'd1', board: 'rpi4', publicKeyX: key(2) }, at),
        'conflict',
      );
      t.is(
        await store.enrollDevice({ deviceId: 'd1', board: 'qemu', publicKeyX: key(1) }, at),
        'conflict',
      );
      t.deepEqual(await store.deviceKey('d1'), {
        deviceId: 'd1',
        board: 'rpi4',
        publicKeyX: key(1),
      });
      t.is(await store.deviceKey('nobody'), undefined);
    },
  );

  test(name('token ids: a replay is refused, an expired id may be used again'), async (t) => {
    const { store } = await open(t);
    const later = new Date(Date.now() + 60_000);
    t.true(await store.useTokenId('d1', 'jti-1', later));
    t.false(await store.useTokenId('d1', 'jti-1', later));
    t.true(await store.useTokenId('d2', 'jti-1', later), 'ids are per device');
    t.true(await store.useTokenId('d1', 'old', new Date(Date.now() - 1000)));
    t.true(await store.useTokenId('d1', 'old', later));
  });

  test(name('check-ins: history newest first, last state, filters and pages'), async (t) => {
    const { store } = await open(t);
    for (let n = 0; n < 5; n++) {
      await store.enrollDevice(
        { deviceId: `dev-${n}`, board: n < 3 ? 'rpi4' : 'qemu', publicKeyX: key(n) },
        new Date(1_700_000_000_000 + n),
      );
    }
    for (let round = 0; round < 3; round++) {
      await store.recordCheckIn('dev-1', {
        at: new Date(1_700_000_100_000 + round * 1000),
        slot: round === 2 ? 'b' : 'a',
        firmwareHash: String(round).repeat(64),
        version: `1.0.${round}`,
        update:
          round === 2
            ? {
                state: 'downloading',
                targetVersion: '1.1.0',
                progress: 0.5,
                bytesDone: 5,
                bytesTotal: 10,
              }
            : { state: 'idle' },
        desiredVersion: round === 2 ? '1.1.0' : null,
      });
    }
    const detail = await store.device('dev-1', 2);
    t.truthy(detail);
    t.deepEqual(
      detail!.checkIns.map((checkIn) => checkIn.version),
      ['1.0.2', '1.0.1'],
    );
    t.deepEqual(detail!.lastCheckIn, {
      at: new Date(1_700_000_102_000),
      slot: 'b',
      firmwareHash: '2'.repeat(64),
      version: '1.0.2',
      update: {
        state: 'downloading',
        targetVersion: '1.1.0',
        progress: 0.5,
        bytesDone: 5,
        bytesTotal: 10,
      },
      desiredVersion: '1.1.0',
    });
    t.is(detail!.enrolledAt.getTime(), 1_700_000_000_001);
    t.is(await store.device('nobody', 10), undefined);

    t.deepEqual(
      (await store.listDevices({ limit: 10 })).map((device) => device.deviceId),
      ['dev-0', 'dev-1', 'dev-2', 'dev-3', 'dev-4'],
    );
    t.deepEqual(
      (await store.listDevices({ board: 'qemu', limit: 10 })).map((device) => device.deviceId),
      ['dev-3', 'dev-4'],
    );
    t.deepEqual(
      (await store.listDevices({ state: 'downloading', limit: 10 })).map(
        (device) => device.deviceId,
      ),
      ['dev-1'],
    );
    const page = await store.listDevices({ board: 'rpi4', limit: 2, afterDeviceId: 'dev-0' });
    t.deepEqual(
      page.map((device) => device.deviceId),
      ['dev-1', 'dev-2'],
    );
    t.is((await store.listDevices({ limit: 10 }))[0]!.lastCheckIn, null);
  });

  test(name('uplinks: newest first, payload as sent'), async (t) => {
    const { store } = await open(t);
    await store.enrollDevice({ deviceId: 'd1', board: 'rpi4', publicKeyX: key(1) }, new Date());
    await store.recordUplink('d1', {
      at: new Date(1000),
      module: 'temp',
      payload: { c: 21.5, tags: ['a'] },
    });
    await store.recordUplink('d1', { at: new Date(2000), module: 'temp', payload: null });
    const detail = await store.device('d1', 10);
    t.deepEqual(detail!.uplinks, [
      { at: new Date(2000), module: 'temp', payload: null },
      { at: new Date(1000), module: 'temp', payload: { c: 21.5, tags: ['a'] } },
    ]);
  });

  test(name('roll-outs: newest first, optimistic updates, those in force'), async (t) => {
    const { store } = await open(t);
    await store.createRollout(rollout('r1', 'rpi4', '1.0.0', 100, 1000));
    await store.createRollout(rollout('r2', 'rpi4', '1.1.0', 10, 2000));
    await store.createRollout(rollout('q1', 'qemu', '1.0.0', 50, 3000));
    await store.createRollout(rollout('r3', 'rpi4', '1.2.0', 20, 4000));
    t.deepEqual(
      (await store.listRollouts()).map((r) => r.id),
      ['r3', 'q1', 'r2', 'r1'],
    );
    t.deepEqual(
      (await store.listRollouts('rpi4')).map((r) => r.id),
      ['r3', 'r2', 'r1'],
    );
    t.deepEqual(await store.rollout('r2'), rollout('r2', 'rpi4', '1.1.0', 10, 2000));
    t.is(await store.rollout('nope'), undefined);

    t.true(
      await store.updateRollout(
        'r3',
        { state: 'active', percent: 20 },
        {
          state: 'cancelled',
          percent: 20,
          updatedAt: new Date(5000),
        },
      ),
    );
    t.false(
      await store.updateRollout(
        'r3',
        { state: 'active', percent: 20 },
        {
          state: 'paused',
          percent: 20,
          updatedAt: new Date(6000),
        },
      ),
      'a stale read loses',
    );
    t.deepEqual(
      (await store.rolloutsInForce('rpi4')).map((r) => r.id),
      ['r2', 'r1'],
    );
    t.true(
      await store.updateRollout(
        'r2',
        { state: 'active', percent: 10 },
        {
          state: 'completed',
          percent: 100,
          updatedAt: new Date(7000),
        },
      ),
    );
    t.deepEqual(
      (await store.rolloutsInForce('rpi4')).map((r) => r.id),
      ['r2'],
      'nothing older than the newest completed one counts',
    );
    t.deepEqual(
      (await store.rolloutsInForce('none')).map((r) => r.id),
      [],
    );
  });

  test(
    name('pruning keeps the newest history per device and drops expired token ids'),
    async (t) => {
      const { store } = await open(t);
      for (const id of ['d1', 'd2']) {
        await store.enrollDevice({ deviceId: id, board: 'rpi4', publicKeyX: key(1) }, new Date());
        for (let n = 0; n < 6; n++) {
          await store.recordCheckIn(id, {
            at: new Date(n * 1000),
            slot: 'a',
            firmwareHash: 'f'.repeat(64),
            version: `1.0.${n}`,
            update: { state: 'idle' },
            desiredVersion: null,
          });
          await store.recordUplink(id, { at: new Date(n * 1000), module: 'm', payload: n });
        }
      }
      await store.useTokenId('d1', 'expired', new Date(Date.now() - 1000));
      await store.useTokenId('d1', 'live', new Date(Date.now() + 60_000));
      await store.prune({ checkInsPerDevice: 2, uplinksPerDevice: 3 }, new Date());
      for (const id of ['d1', 'd2']) {
        const detail = await store.device(id, 100);
        t.deepEqual(
          detail!.checkIns.map((c) => c.version),
          ['1.0.5', '1.0.4'],
        );
        t.deepEqual(
          detail!.uplinks.map((u) => u.payload),
          [5, 4, 3],
        );
        t.is(detail!.lastCheckIn!.version, '1.0.5');
      }
      t.false(await store.useTokenId('d1', 'live', new Date(Date.now() + 60_000)));
      t.true(await store.useTokenId('d1', 'expired', new Date(Date.now() + 60_000)));
    },
  );

  test(
    name('dashboard: fleet groups, device pages (search, filters, sort), roll-out counts'),
    async (t) => {
      const { store } = await open(t);
      const now = 1_800_000_000_000;
      const cutoff = new Date(now - 24 * 3600_000);
      const states: (UpdateReport | null)[] = [
        { state: 'idle' },
        { state: 'committed', targetVersion: '1.1.0' },
        { state: 'downloading', targetVersion: '1.1.0', progress: 0.5 },
        { state: 'failed', targetVersion: '1.1.0', reason: 'disk full' },
        { state: 'rolled-back', targetVersion: '1.1.0', reason: 'no boot' },
        null,
      ];
      const ids: string[] = [];
      for (let n = 0; n < 60; n++) {
        const deviceId = n < 3 ? `Gate_%${n}` : `pi-${String(n).padStart(3, '0')}`;
        ids.push(deviceId);
        await store.enrollDevice(
          { deviceId, board: n < 50 ? 'rpi4' : 'qemu', publicKeyX: key(n % 100) },
          new Date(now),
        );
        const update = states[n % states.length]!;
        if (update === null) continue;
        await store.recordCheckIn(deviceId, {
          at: new Date(n === 7 ? now - 48 * 3600_000 : now - n * 1000),
          slot: 'a',
          firmwareHash: 'f'.repeat(64),
          version: update.state === 'committed' ? '1.1.0' : '1.0.0',
          update,
          desiredVersion: null,
        });
      }
      const groups = await store.fleetGroups(cutoff);
      const sum = (pick: (group: (typeof groups)[number]) => boolean) =>
        groups.filter(pick).reduce((total, group) => total + group.count, 0);
      t.is(
        sum(() => true),
        60,
      );
      t.is(
        sum((group) => group.category === 'notSeen'),
        11,
        'ten never seen, one two days ago',
      );
      t.is(
        sum((group) => group.category === 'failed'),
        10,
      );
      t.is(
        sum((group) => group.category === 'rolledBack'),
        10,
      );
      t.is(
        sum((group) => group.category === 'updating'),
        10,
      );
      t.is(
        sum((group) => group.category === 'upToDate'),
        19,
      );
      t.is(
        sum((group) => group.board === 'qemu'),
        10,
      );
      t.is(
        sum((group) => group.version === '1.1.0'),
        10,
      );

      const page = (query: Partial<Parameters<FleetStore['devicePage']>[0]>) =>
        store.devicePage({
          sort: 'deviceId',
          order: 'asc',
          offset: 0,
          limit: 100,
          notSeenBefore: cutoff,
          ...query,
        });
      t.is((await page({ search: 'gate_%' })).total, 3, 'any case; % and _ are literal');
      t.is((await page({ search: 'e_%1' })).total, 1);
      t.is((await page({ search: 'pi-0_' })).total, 0);
      const second = await page({ board: 'rpi4', limit: 10, offset: 10 });
      t.is(second.total, 50);
      t.deepEqual(
        second.devices.map((device) => device.deviceId),
        ids.slice(10, 20),
      );
      const failed = await page({ category: 'failed' });
      t.is(failed.total, 10);
      t.like(failed.devices[0], {
        category: 'failed',
        updateState: 'failed',
        targetVersion: '1.1.0',
        reason: 'disk full',
        version: '1.0.0',
      });
      t.is((await page({ category: 'notSeen' })).total, 11);
      t.is(
        (await page({ category: 'upToDate', version: '1.1.0' })).total,
        9,
        'one of ten not seen for two days',
      );
      const newest = await page({ sort: 'lastSeen', order: 'desc', limit: 100 });
      t.is(newest.devices[0]!.deviceId, ids[0]!);
      t.is(newest.devices.at(-1)!.lastSeen, null, 'never seen last when newest first');
      const oldest = await page({ sort: 'lastSeen', order: 'asc', limit: 1 });
      t.is(oldest.devices[0]!.lastSeen, null, 'never seen first when oldest first');
      const byVersion = await page({ sort: 'version', order: 'desc', limit: 1 });
      t.is(byVersion.devices[0]!.version, '1.1.0');
      const byState = await page({ sort: 'state', order: 'asc', limit: 100 });
      t.is(byState.devices[0]!.updateState, null);
      t.is(byState.devices.at(-1)!.updateState, 'rolled-back');

      const active = rollout('r-1', 'rpi4', '1.1.0', 40, now);
      await store.createRollout(active);
      const inside = ids.slice(0, 50).filter((id) => rolloutBucket('r-1', id) < 40);
      const expected = {
        targeted: inside.length,
        updated: 0,
        updating: 0,
        failed: 0,
        rolledBack: 0,
        pending: 0,
      };
      for (const id of inside) {
        const n = ids.indexOf(id);
        const state = states[n % states.length]?.state;
        if (state === 'committed') expected.updated++;
        else if (state === 'downloading') expected.updating++;
        else if (state === 'failed') expected.failed++;
        else if (state === 'rolled-back') expected.rolledBack++;
        else expected.pending++;
      }
      t.deepEqual(await store.rolloutCounts(active), expected, 'counted when created');
      await store.enrollDevice(
        { deviceId: 'late', board: 'rpi4', publicKeyX: key(99) },
        new Date(now),
      );
      const late = rolloutBucket('r-1', 'late') < 40 ? 1 : 0;
      t.like(await store.rolloutCounts(active), {
        targeted: expected.targeted + late,
        pending: expected.pending + late,
      });
      t.true(
        await store.updateRollout(
          'r-1',
          { state: 'active', percent: 40 },
          { state: 'completed', percent: 100, updatedAt: new Date(now) },
        ),
      );
      t.like(await store.rolloutCounts(active), { targeted: 51 }, 'completed: the whole board');
      t.like(await store.rolloutCounts({ id: 'none' }), { targeted: 0 });
    },
  );

  test(name('dashboard: operators, sessions, roll-out guard settings and samples'), async (t) => {
    const { store } = await open(t);
    const at = new Date(1_800_000_000_000);
    t.true(await store.addOperator({ username: 'alice', passwordHash: 'h1', createdAt: at }));
    t.false(await store.addOperator({ username: 'alice', passwordHash: 'h2', createdAt: at }));
    await store.addOperator({ username: 'bob', passwordHash: 'h3', createdAt: at });
    t.deepEqual(await store.operator('alice'), {
      username: 'alice',
      passwordHash: 'h1',
      createdAt: at,
    });
    t.deepEqual(
      (await store.listOperators()).map((operator) => operator.username),
      ['alice', 'bob'],
    );
    const session = {
      idHash: 'a'.repeat(64),
      username: 'alice',
      csrfToken: 'csrf',
      createdAt: at,
      lastUsedAt: at,
    };
    await store.createSession(session);
    await store.createSession({ ...session, idHash: 'b'.repeat(64), username: 'bob' });
    t.deepEqual(await store.session(session.idHash), session);
    await store.touchSession(session.idHash, new Date(at.getTime() + 5000));
    t.is((await store.session(session.idHash))!.lastUsedAt.getTime(), at.getTime() + 5000);
    await store.deleteExpiredSessions(new Date(at.getTime() + 1000), new Date(0));
    t.truthy(await store.session(session.idHash));
    t.is(await store.session('b'.repeat(64)), undefined, 'idle since before the limit');
    t.true(await store.removeOperator('alice'));
    t.false(await store.removeOperator('alice'));
    t.is(await store.session(session.idHash), undefined, 'gone with its operator');

    await store.createRollout(rollout('r1', 'rpi4', '1.1.0', 10, 1000));
    t.true(await store.updateRolloutGuard('r1', { failureThresholdPercent: 30 }, new Date(2000)));
    t.false(await store.updateRolloutGuard('nope', { minDevicesForThreshold: 3 }, new Date(2000)));
    t.true(
      await store.updateRollout(
        'r1',
        { state: 'active', percent: 10 },
        { state: 'paused', percent: 10, updatedAt: new Date(3000), pausedReason: 'too many' },
      ),
    );
    t.like(await store.rollout('r1'), {
      failureThresholdPercent: 30,
      minDevicesForThreshold: 10,
      pausedReason: 'too many',
      state: 'paused',
    });
    for (let n = 0; n < 4; n++) {
      await store.recordRolloutSample('r1', {
        at: new Date(n * 1000),
        percent: 10,
        targeted: n,
        updated: n,
        updating: 0,
        failed: 0,
        rolledBack: n,
      });
    }
    const samples = await store.rolloutSamples('r1', 3);
    t.deepEqual(
      samples.map((sample) => sample.targeted),
      [1, 2, 3],
      'the newest, oldest first',
    );
    t.like(samples[2], { at: new Date(3000), rolledBack: 3, percent: 10 });
  });

  test(name('roll-out counts kept by check-ins equal a recount after random steps'), async (t) => {
    const { store } = await open(t);
    const { rollouts, checkIns } = await checkRolloutCounts(t, store, {
      seed: 0x5eed + backend.length,
      steps: 250,
      concurrent: true,
    });
    t.true(rollouts >= 3 && checkIns >= 50, `${rollouts} roll-outs, ${checkIns} check-ins`);
  });

  test(name('devices sort by version precedence, not by its text'), async (t) => {
    const { store } = await open(t);
    const now = 1_800_000_000_000;
    const versions = ['1.10.0', '1.9.0', '2.0.0', '1.10.0-rc.2', '1.10.0-rc.10', 'nightly', null];
    for (const [n, version] of versions.entries()) {
      const deviceId = `d-${n}`;
      await store.enrollDevice({ deviceId, board: 'rpi4', publicKeyX: key(n) }, new Date(now));
      if (version === null) continue;
      await store.recordCheckIn(deviceId, {
        at: new Date(now),
        slot: 'a',
        firmwareHash: 'f'.repeat(64),
        version,
        update: { state: 'idle' },
        desiredVersion: null,
      });
    }
    const sorted = async (order: 'asc' | 'desc') =>
      (
        await store.devicePage({
          sort: 'version',
          order,
          offset: 0,
          limit: 10,
          notSeenBefore: new Date(0),
        })
      ).devices.map((device) => device.version);
    const ascending = [null, 'nightly', '1.9.0', '1.10.0-rc.2', '1.10.0-rc.10', '1.10.0', '2.0.0'];
    t.deepEqual(await sorted('asc'), ascending, 'never checked in first, then not semver');
    t.deepEqual(await sorted('desc'), [...ascending.slice(1).reverse(), null]);
    const page = await store.devicePage({
      sort: 'version',
      order: 'desc',
      offset: 2,
      limit: 2,
      notSeenBefore: new Date(0),
    });
    t.deepEqual(
      page.devices.map((device) => device.version),
      ['1.10.0-rc.10', '1.10.0-rc.2'],
      'paged in SQL',
    );
  });

  test(name('an operator accepting failures by resuming is kept with the roll-out'), async (t) => {
    const { store, reopen } = await open(t);
    await store.createRollout(rollout('r1', 'rpi4', '1.1.0', 10, 1000));
    const paused = { state: 'paused' as const, percent: 10, updatedAt: new Date(2000) };
    t.true(await store.updateRollout('r1', { state: 'active', percent: 10 }, paused));
    t.is((await store.rollout('r1'))!.acceptedFailures, undefined);
    t.true(
      await store.updateRollout(
        'r1',
        { state: 'paused', percent: 10 },
        { state: 'active', percent: 10, updatedAt: new Date(3000), acceptedFailures: 7 },
      ),
    );
    t.true(
      await store.updateRollout(
        'r1',
        { state: 'active', percent: 10 },
        { state: 'active', percent: 20, updatedAt: new Date(4000) },
      ),
    );
    await store.close();
    const again = await reopen();
    t.teardown(() => again.close());
    t.like(await again.rollout('r1'), { state: 'active', percent: 20, acceptedFailures: 7 });
  });

  test(name('reopening runs no migration twice and keeps the data'), async (t) => {
    const { store, reopen } = await open(t);
    await store.enrollDevice({ deviceId: 'd1', board: 'rpi4', publicKeyX: key(1) }, new Date());
    await store.close();
    const again = await reopen();
    t.teardown(() => again.close());
    t.is((await again.deviceKey('d1'))?.board, 'rpi4');
  });
}
