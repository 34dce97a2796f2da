import test from 'ava';
import { Writable } from 'node:stream';
import { runCli } from '../src/cli.js';

function capture(): { stream: Writable; text: () => string } {
  const chunks: Buffer[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      chunks.push(chunk);
      done();
    },
  });
  return { stream, text: () => Buffer.concat(chunks).toString() };
}

test('--help prints usage and succeeds', (t) => {
  const out = capture();
  t.is(runCli(['--help'], out.stream), 0);
  t.regex(out.text(), /^usage: ota-server <command>/);
});

test('an unknown command is refused with usage', (t) => {
  const out = capture();
  const err = capture();
  t.is(runCli(['frobnicate'], out.stream, err.stream), 2);
  t.regex(err.text(), /^ota-server: unknown command 'frobnicate'/);
});
