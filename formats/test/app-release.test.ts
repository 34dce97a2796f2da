import test from 'ava';
import {
  APP_INDEX_FORMAT,
  AppIndexError,
  type AppIndex,
  CheckInRequest,
  CheckInResponse,
  TargetNameError,
  appFileTargetName,
  appIndexTargetName,
  checkAppFilePath,
  encodeAppIndex,
  parseAppIndex,
} from '../src/index.js';
import { Value } from '@sinclair/typebox/value';

const SHA = 'ab'.repeat(32);
const index: AppIndex = {
  format: APP_INDEX_FORMAT,
  board: 'rpi4',
  version: '1.2.0',
  files: [
    { path: 'modules/b/b.wasm', length: 10, sha256: SHA },
    { path: 'modules/a/manifest.json', length: 3, sha256: SHA },
  ],
};

test('app target names: <board>/apps/<version>/<path> and the index app.json', (t) => {
  t.is(appIndexTargetName('rpi4', '1.2.0'), 'rpi4/apps/1.2.0/app.json');
  t.is(
    appFileTargetName('rpi4', '1.2.0', 'modules/log-filter/log-filter.wasm'),
    'rpi4/apps/1.2.0/modules/log-filter/log-filter.wasm',
  );
  t.throws(() => appIndexTargetName('rpi4/x', '1.0.0'), { instanceOf: TargetNameError });
  t.throws(() => appIndexTargetName('rpi4', '..'), { instanceOf: TargetNameError });
});

test('app file paths: relative plain names only', (t) => {
  t.is(checkAppFilePath('config/sampler.json'), 'config/sampler.json');
  for (const bad of [
    '/etc/passwd',
    'C:/x',
    '../x',
    'modules/../../x',
    'a/..b',
    'a\\b',
    'a//b',
    'a/',
    '.hidden',
    'modules/.x/y',
    'app.json',
    '',
    'a/b/c/d/e/f/g/h/i',
    `${'x'.repeat(513)}`,
  ]) {
    t.throws(() => checkAppFilePath(bad), { instanceOf: TargetNameError }, bad);
  }
  // app.json is the index only at the top: deeper it is an ordinary file.
  t.is(checkAppFilePath('modules/a/app.json'), 'modules/a/app.json');
});

test('the index: encoded sorted and stable, parsed back, malformed ones refused', (t) => {
  const text = encodeAppIndex(index);
  t.is(text, encodeAppIndex({ ...index, files: [...index.files].reverse() }));
  const parsed = parseAppIndex(new TextEncoder().encode(text));
  t.deepEqual(
    parsed.files.map((file) => file.path),
    ['modules/a/manifest.json', 'modules/b/b.wasm'],
  );
  const refused = (value: unknown, message: RegExp) =>
    t.throws(() => parseAppIndex(JSON.stringify(value)), { instanceOf: AppIndexError, message });
  t.throws(() => parseAppIndex('{'), { instanceOf: AppIndexError, message: /not JSON/ });
  refused([], /not a JSON object/);
  refused({ ...index, format: 'other/1' }, /format/);
  refused({ ...index, extra: 1 }, /extra is not a known field/);
  refused({ ...index, files: [] }, /1 to 4096/);
  refused({ ...index, board: '../x' }, /board/);
  refused({ ...index, files: [{ path: 'a', length: -1, sha256: SHA }] }, /length/);
  refused({ ...index, files: [{ path: 'a', length: 1, sha256: 'AB'.repeat(32) }] }, /sha256/);
  refused({ ...index, files: [{ path: '../a', length: 1, sha256: SHA }] }, /'\.\.'/);
  refused({ ...index, files: [{ path: '/a', length: 1, sha256: SHA }] }, /absolute/);
  refused(
    {
      ...index,
      files: [
        { path: 'a', length: 1, sha256: SHA },
        { path: 'a', length: 1, sha256: SHA },
      ],
    },
    /listed twice/,
  );
  refused(
    {
      ...index,
      files: [
        { path: 'a', length: 1, sha256: SHA },
        { path: 'a/b', length: 1, sha256: SHA },
      ],
    },
    /a file and a folder/,
  );
});

test('the check-in: app report optional (old devices pass), app answer optional (old servers)', (t) => {
  const report = {
    board: 'rpi4',
    slot: 'a',
    firmwareHash: SHA,
    version: '1.0.0',
    update: { state: 'idle' },
  };
  t.true(Value.Check(CheckInRequest, report));
  t.true(Value.Check(CheckInRequest, { ...report, app: { version: null, state: 'idle' } }));
  t.true(
    Value.Check(CheckInRequest, {
      ...report,
      app: { version: '1.0.0', state: 'rolled-back', targetVersion: '1.1.0', reason: 'refused' },
    }),
  );
  t.false(Value.Check(CheckInRequest, { ...report, app: { version: null, state: 'nope' } }));
  t.true(Value.Check(CheckInResponse, { desired: null, checkInSeconds: 60 }));
  t.true(
    Value.Check(CheckInResponse, {
      desired: null,
      app: { version: '1.2.0', board: 'rpi4', indexTarget: 'rpi4/apps/1.2.0/app.json' },
      checkInSeconds: 60,
    }),
  );
});
