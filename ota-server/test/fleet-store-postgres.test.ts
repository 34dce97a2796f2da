import test from 'ava';
import { PostgresDatabase } from '../src/fleet/postgres-database.js';
import { SqlFleetStore } from '../src/fleet/sql-fleet-store.js';
import { fleetStoreSuite } from './helpers/fleet-store-suite.js';
import { startPostgresCluster, type PostgresCluster } from './helpers/postgres-cluster.js';

// A real PostgreSQL server from Debian's package, in a throwaway cluster: if it cannot start,
// every test here fails (a store that was never tested must not pass).
let cluster: PostgresCluster | undefined;
let startError: Error | undefined;
let databases = 0;

test.before(async () => {
  try {
    cluster = await startPostgresCluster();
  } catch (error) {
    startError = error as Error;
  }
});
test.after.always(async () => {
  await cluster?.stop();
});

fleetStoreSuite('postgres', async (t) => {
  if (!cluster) throw startError ?? new Error('PostgreSQL cluster not started');
  const url = await cluster.createDatabase(`fleet_${++databases}`);
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
