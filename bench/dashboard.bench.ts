import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { hashPassword } from '../ota-server/src/dashboard/password-hash.js';
import { PostgresDatabase } from '../ota-server/src/fleet/postgres-database.js';
import { SqlFleetStore } from '../ota-server/src/fleet/sql-fleet-store.js';
import { ROLLOUT_GUARD_DEFAULTS, type Rollout } from '../ota-server/src/fleet/store.js';
import { buildServer } from '../ota-server/src/server/build-server.js';
import { SERVER_DEFAULTS } from '../ota-server/src/server/config.js';
import { TokenSet } from '../ota-server/src/server/token-set.js';
import { initRepository } from '../ota-server/src/tuf/index.js';
import { startPostgresCluster } from '../ota-server/test/helpers/postgres-cluster.js';
import { formatters, printTable, type Cell } from './lib/table.js';

/**
 * The fleet dashboard's API at 100,000 devices in PostgreSQL (a throwaway cluster), through
 * the update server as `serve` builds it: the overview against the 1 s goal, a device page
 * sorted by last check-in, an id search, a category filter, and a roll-out's counts, each
 * the median of RUNS after one cold call. The roll-out counts are set against the naive
 * way (every device row of the board read and hashed in JavaScript).
 */

const DEVICES = Number(process.env.BENCH_DASHBOARD_DEVICES ?? 100_000);
const RUNS = Number(process.env.BENCH_RUNS ?? 7);
const GOAL_MS = 1000;

/** The fleet in one statement: boards, versions, update states and check-in times spread out. */
const FLEET_SQL = `INSERT INTO devices (device_id, board, public_key_x, enrolled_at, last_seen_at,
    slot, firmware_hash, version, update_state, update_report, desired_version, target_version)
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
    NULL, CASE WHEN st IN ('idle', 'committed') OR st IS NULL THEN NULL ELSE '1.1.0' END
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
    await client.query(FLEET_SQL, [now, DEVICES]);
    await client.query('VACUUM ANALYZE devices');
    const insertMs = performance.now() - started;
    const trigram = await client.query(
      "SELECT 1 FROM pg_indexes WHERE indexname = 'devices_by_id_trigram'",
    );

    const at = new Date(now - 3600_000);
    const rollout: Rollout = {
      id: 'bench-rollout',
      board: 'rpi4',
      version: '1.1.0',
      percent: 30,
      state: 'active',
      createdAt: at,
      updatedAt: at,
      ...ROLLOUT_GUARD_DEFAULTS,
      pausedReason: null,
    };
    await store.createRollout(rollout);
    await store.createRollout({ ...rollout, id: 'bench-paused', board: 'qemu', state: 'paused' });
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

      const firstCounts = performance.now();
      await store.rolloutCounts(rollout);
      const fillMs = performance.now() - firstCounts;
      const overview = await timed(() => get('/overview'));
      const bySeen = await timed(() => get('/devices?sort=lastSeen&order=desc&page=3&pageSize=50'));
      const deep = await timed(() =>
        get('/devices?sort=lastSeen&order=desc&page=1500&pageSize=50'),
      );
      const search = await timed(() => get('/devices?q=7a3f&pageSize=50'));
      const failed = await timed(() => get('/devices?category=failed&sort=lastSeen&order=desc'));
      const counts = await timed(() => store.rolloutCounts(rollout));
      const rolloutPage = await timed(() => get('/rollouts/bench-rollout'));
      // The naive way: the board's rows to this process, each device hashed here.
      const naive = await timed(async () => {
        const { rows } = await client.query<{
          device_id: string;
          version: string | null;
          update_state: string | null;
          target_version: string | null;
        }>(
          'SELECT device_id, version, update_state, target_version FROM devices WHERE board = $1',
          ['rpi4'],
        );
        let targeted = 0;
        for (const row of rows) {
          const bucket =
            createHash('sha256').update(`${rollout.id}:${row.device_id}`).digest().readUInt32BE(0) %
            100;
          if (bucket < rollout.percent) targeted++;
        }
        return targeted;
      });
      const total = (overview.last as { total: number }).total;
      if (total !== DEVICES) throw new Error(`overview counts ${total} devices, not ${DEVICES}`);
      if (naive.last !== (counts.last as { targeted: number }).targeted) {
        throw new Error(
          `roll-out counts differ: naive ${naive.last}, store ${counts.last.targeted}`,
        );
      }
      const searchTotal = (search.last as { total: number }).total;

      // The peer: the 1 s goal for what a page waits on, the naive way for the counts.
      const row = (name: string, result: { cold: number; warm: number }, peer = GOAL_MS) =>
        [name, result.cold, result.warm, peer, result.warm / peer] as [string, ...Cell[]];
      printTable({
        title:
          `dashboard API on PostgreSQL, ${DEVICES.toLocaleString('en-US')} devices ` +
          `(inserted in ${(insertMs / 1000).toFixed(1)} s; trigram index ${trigram.rowCount ? 'yes' : 'no'}), ` +
          `median of ${RUNS} after one cold call`,
        columns: [
          { header: 'cold ms', format: formatters.fixed(1) },
          { header: 'median ms', format: formatters.fixed(1) },
          { header: 'peer ms', format: formatters.fixed(1) },
          { header: 'median / peer', format: formatters.ratio },
        ],
        rows: [
          row('GET /overview (2 roll-outs) vs the 1 s goal', overview),
          row('GET /devices sorted by last seen, page 3', bySeen),
          row('GET /devices sorted by last seen, page 1500', deep),
          row(`GET /devices?q=7a3f (${searchTotal} found)`, search),
          row('GET /devices?category=failed', failed),
          row('GET /rollouts/:id (view + samples)', rolloutPage),
          row('store.rolloutCounts (stored buckets) vs naive', counts, naive.warm),
          row('naive counts: rows to JS, SHA-256 each (peer)', naive, naive.warm),
        ],
      });
      const ratio = (name: string, value: number, peer: number) =>
        process.stdout.write(
          `${name}: ${value.toFixed(1)} ms / ${peer.toFixed(1)} ms = ${(value / peer).toFixed(3)}x\n`,
        );
      ratio('overview / 1 s goal', overview.warm, GOAL_MS);
      ratio('roll-out counts / naive counts', counts.warm, naive.warm);
      process.stdout.write(
        `first roll-out count (hashes ${Math.round(DEVICES * 0.9).toLocaleString('en-US')} ids, stores their buckets): ${fillMs.toFixed(0)} ms\n`,
      );
      if (overview.warm > GOAL_MS) throw new Error(`overview took ${overview.warm.toFixed(0)} ms`);
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
