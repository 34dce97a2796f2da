import test from 'ava';
import { join } from 'node:path';
import { PostgresDatabase } from '../src/fleet/postgres-database.js';
import { SqlFleetStore } from '../src/fleet/sql-fleet-store.js';
import { SqliteDatabase } from '../src/fleet/sqlite-database.js';
import { tempDir } from './helpers/fixtures.js';
import { fleetStoreSuite } from './helpers/fleet-store-suite.js';
import { startPostgresCluster, type PostgresCluster } from './helpers/postgres-cluster.js';

// The one fleet store suite against both backends, in one test process (a process costs
// about as much to start as the SQLite half takes to run).

fleetStoreSuite('sqlite', async (t) => {
  const file = join(await tempDir(t, 'sqlite'), 'fleet.sqlite');
  const store = await SqlFleetStore.open(new SqliteDatabase(file));
  let closed = false;
  t.teardown(() => (closed ? undefined : store.close()));
  const close = store.close.bind(store);
  store.close = async () => {
    closed = true;
    await close();
  };
  return { store, reopen: () => SqlFleetStore.open(new SqliteDatabase(file)) };
});

// A real PostgreSQL server from Debian's package, in a throwaway cluster started by the first
// PostgreSQL test (the SQLite ones need not wait for initdb): if it cannot start, every
// PostgreSQL test fails (a store that was never tested must not pass).
let cluster: Promise<PostgresCluster> | undefined;
let databases = 0;

test.after.always(async () => {
  await (await cluster?.catch(() => undefined))?.stop();
});

fleetStoreSuite('postgres', async (t) => {
  cluster ??= startPostgresCluster();
  const url = await (await cluster).createDatabase(`fleet_${++databases}`);
  const store = await SqlFleetStore.open(new PostgresDatabase(url));
  let closed = false;
  const close = store.close.bind(store);
  store.close = async () => {
    closed = true;
    await close();
  };
  t.teardown(() => (closed ? undefined : store.close()));
  return { store, reopen: () => SqlFleetStore.open(new PostgresDatabase(url)) };
});
