import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { hashPassword } from '../ota-server/src/dashboard/password-hash.js';
import { NOT_SEEN_AFTER_MS } from '../ota-server/src/fleet/device-category.js';
import { PostgresDatabase } from '../ota-server/src/fleet/postgres-database.js';
import { countsSelect } from '../ota-server/src/fleet/rollout-counts-sql.js';
import { rolloutBucket } from '../ota-server/src/fleet/rollout-policy.js';
import { SqlFleetStore } from '../ota-server/src/fleet/sql-fleet-store.js';
import {
  ROLLOUT_GUARD_DEFAULTS,
  type Rollout,
  type RolloutCounts,
} from '../ota-server/src/fleet/store.js';
import { versionSortKey } from '../ota-server/src/fleet/version-sort-key.js';
import { buildServer } from '../ota-server/src/server/build-server.js';
import { SERVER_DEFAULTS } from '../ota-server/src/server/config.js';
import { TokenSet } from '../ota-server/src/server/token-set.js';
import { initRepository } from '../ota-server/src/tuf/index.js';
import { startPostgresCluster } from '../ota-server/test/helpers/postgres-cluster.js';
import { formatters, printTable, type Cell } from './lib/table.js';

/**
 * The fleet dashboard's API at 100,000 devices in PostgreSQL (a throwaway cluster), through
 * the update server as `serve` builds it: the overview against the 1 s goal with one and with
 * three active roll-outs (and the queries it runs), device pages, an id search, a category
 * filter; then what keeping roll-out counts costs: creating and widening a roll-out, and a
 * check-in that moves a device in three roll-outs against one that moves it in none. Each
 * the median of RUNS after one cold call, unless it can only happen once.
 */

const DEVICES = Number(process.env.BENCH_DASHBOARD_DEVICES ?? 100_000);
const RUNS = Number(process.env.BENCH_RUNS ?? 7);
const GOAL_MS = 1000;
/** Check-ins timed one after another, each way. */
const CHECK_INS = Number(process.env.BENCH_DASHBOARD_CHECK_INS ?? 200);

/** The fleet in one statement: boards, versions, update states and check-in times spread out. */
const FLEET_SQL = `INSERT INTO devices (device_id, board, public_key_x, enrolled_at, last_seen_at,
    slot, firmware_hash, version, update_state, update_report, desired_version, target_version,
    version_key)
  SELECT 'dev-' || md5(g::text) || '-' || g,
    CASE WHEN g % 10 = 0 THEN 'qemu' ELSE 'rpi4' END,
    rpad('k', 43, 'x'), $1::bigint - 90::bigint * 86400000,
    CASE WHEN g % 50 = 0 THEN NULL ELSE $1::bigint - (g::bigint * 7919 % 172800) * 1000 END,
    CASE WHEN g % 50 = 0 THEN NULL ELSE 'a' END,
    CASE WHEN g % 50 = 0 THEN NULL ELSE repeat('f', 64) END,
    CASE WHEN g % 50 = 0 THEN NULL WHEN g % 3 = 0 THEN '1.1.0' ELSE '1.0.0' END,
    st, CASE WHEN st IS NULL THEN NULL
      ELSE json_build_object('state', st, 'targetVersion', '1.1.0', 'reason',
        CASE WHEN st IN ('failed', 'rolled-back') THEN 'bench failure' END)::text END,
    NULL, CASE WHEN st IN ('idle', 'committed') OR st IS NULL THEN NULL ELSE '1.1.0' END,
    CASE WHEN g % 50 = 0 THEN NULL WHEN g % 3 = 0 THEN $3 ELSE $4 END
  FROM (SELECT g, CASE WHEN g % 50 = 0 THEN NULL
      WHEN g % 97 = 0 THEN 'failed' WHEN g % 193 = 0 THEN 'rolled-back'
      WHEN g % 41 = 0 THEN 'downloading' WHEN g % 3 = 0 THEN 'committed' ELSE 'idle' END AS st
    FROM generate_series(1, $2::int) g) spread`;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
}

async function timed<T>(work: () => Promise<T>): Promise<{ cold: number; warm: number; last: T }> {
  let started = performance.now();
  let last = await work();
  const cold = performance.now() - started;
  const times: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    started = performance.now();
    last = await work();
    times.push(performance.now() - started);
  }
  return { cold, warm: median(times), last };
}

async function once<T>(work: () => Promise<T>): Promise<{ cold: number; warm: number; last: T }> {
  const started = performance.now();
  const last = await work();
  const ms = performance.now() - started;
  return { cold: ms, warm: ms, last };
}

/** A roll-out's counts from scratch, the way each one was counted before counts were kept. */
const RECOUNT_SQL = countsSelect(
  `FROM rollouts JOIN rollout_buckets b ON b.rollout_id = rollouts.id
   JOIN devices d ON d.device_id = b.device_id
   WHERE rollouts.id = $1 AND b.bucket < rollouts.percent`,
  { named: true },
);

export default async function bench(): Promise<void> {
  const scratch = mkdtempSync(join(tmpdir(), 'bench-dashboard-'));
  const cluster = await startPostgresCluster();
  try {
    const url = await cluster.createDatabase('dashboard');
    const store = await SqlFleetStore.open(new PostgresDatabase(url));
    const client = new pg.Client({ connectionString: url });
    // The cluster stopping under a failed run must not hide that run's error.
    client.on('error', () => undefined);
    await client.connect();
    const now = Date.now();
    const started = performance.now();
    await client.query(FLEET_SQL, [now, DEVICES, versionSortKey('1.1.0'), versionSortKey('1.0.0')]);
    await client.query('VACUUM ANALYZE devices');
    const insertMs = performance.now() - started;
    const trigram = await client.query(
      "SELECT 1 FROM pg_indexes WHERE indexname = 'devices_by_id_trigram'",
    );

    const at = new Date(now - 3600_000);
    const rollout = (n: number): Rollout => ({
      id: `bench-rollout-${n}`,
      board: 'rpi4',
      version: '1.1.0',
      percent: 30,
      state: 'active',
      createdAt: new Date(at.getTime() + n),
      updatedAt: new Date(at.getTime() + n),
      ...ROLLOUT_GUARD_DEFAULTS,
      pausedReason: null,
    });
    const rollouts = [rollout(1), rollout(2), rollout(3)];
    await store.addOperator({
      username: 'bench',
      passwordHash: await hashPassword('bench password 0123'),
      createdAt: at,
    });

    const repo = join(scratch, 'repo');
    await initRepository(repo);
    const app = await buildServer({
      config: {
        ...SERVER_DEFAULTS,
        repoDir: repo,
        port: 0,
        fleetTokens: TokenSet.fromTokens([]),
        operatorTokens: TokenSet.fromTokens([]),
        logLevel: 'warn',
        rolloutSampleSeconds: 3600,
      },
      store,
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    try {
      const login = await fetch(`${base}/dashboard/api/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username: 'bench', password: 'bench password 0123' }),
      });
      const cookie = (login.headers.get('set-cookie') ?? '').split(';', 1)[0]!;
      const get = async (path: string) => {
        const response = await fetch(`${base}/dashboard/api${path}`, { headers: { cookie } });
        if (!response.ok) throw new Error(`${path}: ${response.status} ${await response.text()}`);
        return (await response.json()) as Record<string, unknown>;
      };
      const recount = async (id: string) => {
        const { rows } = await client.query<Record<string, string>>(RECOUNT_SQL, [id]);
        const row = rows[0]!;
        return {
          targeted: Number(row.devices_targeted),
          updated: Number(row.devices_updated),
          updating: Number(row.devices_updating),
          failed: Number(row.devices_failed),
          rolledBack: Number(row.devices_rolled_back),
          pending: Number(row.devices_pending),
        } satisfies RolloutCounts;
      };
      /** The kept counts of every roll-out equal a recount from scratch. */
      const checkCounts = async (when: string) => {
        for (const { id } of rollouts) {
          if (!(await store.rollout(id))) continue;
          const [kept, fresh] = await Promise.all([store.rolloutCounts({ id }), recount(id)]);
          if (JSON.stringify(kept) !== JSON.stringify(fresh)) {
            throw new Error(
              `${when}: ${id} kept ${JSON.stringify(kept)}, recount ${JSON.stringify(fresh)}`,
            );
          }
        }
      };
      const overviewRollouts = async () =>
        ((await get('/overview')) as { rollouts: unknown[] }).rollouts.length;

      const create = await once(() => store.createRollout(rollouts[0]!));
      const overviewOne = await timed(overviewRollouts);
      for (const next of rollouts.slice(1)) await store.createRollout(next);
      const overviewThree = await timed(overviewRollouts);
      if (overviewOne.last !== 1 || overviewThree.last !== 3) {
        throw new Error(`overview showed ${overviewOne.last} and ${overviewThree.last} roll-outs`);
      }
      await checkCounts('created');
      const notSeenBefore = new Date(Date.now() - NOT_SEEN_AFTER_MS);
      const groups = await timed(() => store.fleetGroups(notSeenBefore));
      const list = await timed(() => store.listRollouts());
      const kept = await timed(() => store.rolloutCounts(rollouts[0]!));
      const fromScratch = await timed(() => recount(rollouts[0]!.id));

      const bySeen = await timed(() => get('/devices?sort=lastSeen&order=desc&page=3&pageSize=50'));
      const deep = await timed(() =>
        get('/devices?sort=lastSeen&order=desc&page=1500&pageSize=50'),
      );
      const byVersion = await timed(() =>
        get('/devices?sort=version&order=desc&page=3&pageSize=50'),
      );
      const search = await timed(() => get('/devices?q=7a3f&pageSize=50'));
      const failed = await timed(() => get('/devices?category=failed&sort=lastSeen&order=desc'));
      const rolloutPage = await timed(() => get(`/rollouts/${rollouts[0]!.id}`));

      const widen = await once(() =>
        store.updateRollout(
          rollouts[2]!.id,
          { state: 'active', percent: 30 },
          { state: 'active', percent: 40, updatedAt: new Date() },
        ),
      );
      rollouts[2]!.percent = 40;
      await checkCounts('widened');

      // Devices in all three roll-outs' buckets, idle on 1.0.0: a check-in that starts the
      // download moves each in three counts; the same check-in again (progress) moves none.
      const inAll = (
        await client.query<{ device_id: string }>(
          `SELECT device_id FROM devices WHERE board = 'rpi4' AND version = '1.0.0'
             AND update_state = 'idle' LIMIT 20000`,
        )
      ).rows
        .map((row) => row.device_id)
        .filter((id) => rollouts.every((r) => rolloutBucket(r.id, id) < r.percent))
        .slice(0, CHECK_INS);
      const checkInAll = async (progress: number) => {
        const started = performance.now();
        for (const deviceId of inAll) {
          await store.recordCheckIn(deviceId, {
            at: new Date(),
            slot: 'a',
            firmwareHash: 'f'.repeat(64),
            version: '1.0.0',
            update: { state: 'downloading', targetVersion: '1.1.0', progress },
            desiredVersion: '1.1.0',
          });
        }
        const each = (performance.now() - started) / inAll.length;
        return { cold: each, warm: each, last: inAll.length };
      };
      const moving = await checkInAll(0.1);
      const still = await checkInAll(0.2);
      await checkCounts('after check-ins');

      const total = ((await get('/overview')) as { total: number }).total;
      if (total !== DEVICES) throw new Error(`overview counts ${total} devices, not ${DEVICES}`);
      const searchTotal = (search.last as { total: number }).total;

      const row = (name: string, result: { cold: number; warm: number }, peer = GOAL_MS) =>
        [name, result.cold, result.warm, peer, result.warm / peer] as [string, ...Cell[]];
      printTable({
        title:
          `dashboard API on PostgreSQL, ${DEVICES.toLocaleString('en-US')} devices ` +
          `(inserted in ${(insertMs / 1000).toFixed(1)} s; trigram index ${trigram.rowCount ? 'yes' : 'no'}), ` +
          `roll-outs of 30% of the 90,000 rpi4 devices, median of ${RUNS} after one cold call`,
        columns: [
          { header: 'cold ms', format: formatters.fixed(1) },
          { header: 'median ms', format: formatters.fixed(1) },
          { header: 'peer ms', format: formatters.fixed(1) },
          { header: 'median / peer', format: formatters.ratio },
        ],
        rows: [
          row('GET /overview, 1 active roll-out, vs the 1 s goal', overviewOne),
          row('GET /overview, 3 active roll-outs, vs the 1 s goal', overviewThree),
          row('  query: fleet groups (one grouped count)', groups),
          row('  query: list roll-outs', list),
          row("  query: one roll-out's kept counts vs recount", kept, fromScratch.warm),
          row('  recount from scratch (buckets join, peer)', fromScratch, fromScratch.warm),
          row('GET /devices sorted by last seen, page 3', bySeen),
          row('GET /devices sorted by last seen, page 1500', deep),
          row('GET /devices sorted by version, page 3', byVersion),
          row(`GET /devices?q=7a3f (${searchTotal} found)`, search),
          row('GET /devices?category=failed', failed),
          row('GET /rollouts/:id (view + samples)', rolloutPage),
          row('create a roll-out (hash 90,000 ids, count), once', create),
          row('widen 30% -> 40% (lock, add 9,000 devices), once', widen),
          row(
            `check-in moving a device in 3 roll-outs (${moving.last}) vs none`,
            moving,
            still.warm,
          ),
          row('check-in moving it in none (peer)', still, still.warm),
        ],
      });
      const ratio = (name: string, value: number, peer: number) =>
        process.stdout.write(
          `${name}: ${value.toFixed(1)} ms / ${peer.toFixed(1)} ms = ${(value / peer).toFixed(3)}x\n`,
        );
      ratio('overview with 1 active roll-out / 1 s goal', overviewOne.warm, GOAL_MS);
      ratio('overview with 3 active roll-outs / 1 s goal', overviewThree.warm, GOAL_MS);
      ratio('overview 3 roll-outs / 1 roll-out', overviewThree.warm, overviewOne.warm);
      ratio('check-in moving 3 counts / moving none', moving.warm, still.warm);
      for (const overview of [overviewOne, overviewThree]) {
        if (overview.warm > GOAL_MS)
          throw new Error(`overview took ${overview.warm.toFixed(0)} ms`);
      }
    } finally {
      await app.close();
      await client.end();
      await store.close();
    }
  } finally {
    await cluster.stop();
    rmSync(scratch, { recursive: true, force: true });
  }
}
