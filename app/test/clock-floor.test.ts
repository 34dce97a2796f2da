import { statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { saveClockFloor } from '../src/clock-floor.js';
import { testConfig, testServer } from './helpers.js';
import { scratchDir } from '../../test/scratch.js';

const scratch = () => scratchDir('edge-clock');
const mtime = (path: string) => statSync(path).mtime.getTime();

test('the clock floor file is created with the time, and follows a clock that moves on', (t) => {
  const path = join(scratch(), 'clock');
  t.is(saveClockFloor(path, new Date('2026-01-01T00:00:00Z')), 'saved');
  t.is(mtime(path), Date.parse('2026-01-01T00:00:00Z'));
  t.is(saveClockFloor(path, new Date('2026-06-01T00:00:00Z')), 'saved');
  t.is(mtime(path), Date.parse('2026-06-01T00:00:00Z'));
});

test('a clock behind the floor never lowers it', (t) => {
  const path = join(scratch(), 'clock');
  writeFileSync(path, '');
  const later = new Date('2027-03-01T00:00:00Z');
  utimesSync(path, later, later);
  t.is(saveClockFloor(path, new Date('1970-01-01T00:00:42Z')), 'unchanged');
  t.is(mtime(path), later.getTime());
});

test('a host without the folder is not an error; a path through a file is', (t) => {
  const dir = scratch();
  t.is(saveClockFloor(join(dir, 'no-data', 'clock')), 'no-directory');
  writeFileSync(join(dir, 'file'), '');
  t.throws(() => saveClockFloor(join(dir, 'file', 'clock')), { code: 'ENOTDIR' });
});

test('the edge server notes the time when ready and when it stops, and starts without the folder', async (t) => {
  const dir = scratch();
  const path = join(dir, 'clock');
  const app = await testServer({ config: testConfig({ EDGE_BOOT_CLOCK_FLOOR_FILE: path }) });
  await app.ready();
  const atReady = mtime(path);
  t.true(Math.abs(atReady - Date.now()) < 5_000);
  utimesSync(path, new Date(0), new Date(0));
  await app.close();
  t.true(mtime(path) >= atReady);

  const unwritable = join(dir, 'file-not-folder');
  writeFileSync(unwritable, '');
  const without = await testServer({
    config: testConfig({ EDGE_BOOT_CLOCK_FLOOR_FILE: join(unwritable, 'clock') }),
  });
  await without.ready();
  await without.close();
});
