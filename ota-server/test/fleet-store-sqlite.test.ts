import { join } from 'node:path';
import { SqlFleetStore } from '../src/fleet/sql-fleet-store.js';
import { SqliteDatabase } from '../src/fleet/sqlite-database.js';
import { tempDir } from './helpers/fixtures.js';
import { fleetStoreSuite } from './helpers/fleet-store-suite.js';

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
