import test from 'ava';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { runCli } from '../src/cli.js';
import { verifyPassword } from '../src/dashboard/password-hash.js';
import { openFleetStore } from '../src/fleet/open-store.js';
import { tempDir } from './helpers/fixtures.js';

// `ota-server operator add|remove|list`: the dashboard's logins, in the fleet store.

async function operator(argv: string[], data: string, stdin = '') {
  let out = '';
  let err = '';
  const sink = (write: (text: string) => void) =>
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        write(chunk.toString());
        done();
      },
    });
  const code = await runCli(['operator', ...argv, '--data', data], {
    out: sink((text) => (out += text)),
    err: sink((text) => (err += text)),
    env: {},
    input: Readable.from([stdin]),
  });
  return { code, out, err };
}

test('operator add reads the password from stdin; list; remove; clear refusals', async (t) => {
  const data = join(await tempDir(t, 'operators'), 'data');
  const added = await operator(['add', 'alice'], data, 'correct horse battery\nignored\n');
  t.is(added.code, 0, added.err);
  t.is(added.out, 'operator alice added\n');

  const again = await operator(['add', 'alice'], data, 'another good password\n');
  t.is(again.code, 1);
  t.regex(again.err, /operator alice exists already/);
  const weak = await operator(['add', 'bob'], data, 'short\n');
  t.is(weak.code, 1);
  t.regex(weak.err, /at least 12 characters/);
  t.is((await operator(['add', '../x'], data, 'correct horse battery\n')).code, 2);
  t.is((await operator(['add'], data)).code, 2);
  t.is((await operator(['frob'], data)).code, 2);

  const list = await operator(['list'], data);
  t.regex(list.out, /^alice {2}\(since \d{4}-/);

  const store = await openFleetStore({ dataDir: data });
  const stored = await store.operator('alice');
  await store.close();
  t.regex(stored!.passwordHash, /^scrypt\$32768\$8\$1\$/);
  t.true(await verifyPassword('correct horse battery', stored!.passwordHash));

  t.is((await operator(['remove', 'alice'], data)).code, 0);
  t.regex((await operator(['remove', 'alice'], data)).err, /no operator alice/);
  t.is((await operator(['list'], data)).out, 'no operators\n');
});
