import test from 'ava';
import { TokenBucket } from '../../src/ota/token-bucket.js';

function clock() {
  let now = 0;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

test('a burst goes at once, then bytes wait for the rate', (t) => {
  const time = clock();
  const bucket = new TokenBucket(1000, 500, time.now);
  t.is(bucket.reserve(500), 0);
  t.is(bucket.reserve(250), 250);
  time.advance(250);
  t.is(bucket.reserve(0), 0);
  t.is(bucket.reserve(1000), 1000);
});

test('saved tokens never exceed the burst', (t) => {
  const time = clock();
  const bucket = new TokenBucket(1000, 100, time.now);
  bucket.reserve(100);
  time.advance(60_000);
  t.is(bucket.reserve(100), 0);
  t.is(bucket.reserve(100), 100);
});

test('the limit changes while running', (t) => {
  const time = clock();
  const bucket = new TokenBucket(1000, 1000, time.now);
  bucket.reserve(1000);
  bucket.setLimit(10_000);
  t.is(bucket.reserve(1000), 100);
  bucket.setLimit(100, 10);
  time.advance(1000);
  t.is(bucket.burst, 10);
  t.is(bucket.reserve(10), 0);
});

test('no limit: Infinity never waits', (t) => {
  const bucket = new TokenBucket(Infinity, 1);
  t.is(bucket.reserve(1e12), 0);
});

test('a rate that is not positive is refused', (t) => {
  t.throws(() => new TokenBucket(0, 1), { instanceOf: RangeError });
  t.throws(() => new TokenBucket(1, -1), { instanceOf: RangeError });
});

test('take waits in real time, and an abort stops the wait', async (t) => {
  const bucket = new TokenBucket(10_000, 1);
  const started = performance.now();
  await bucket.take(500);
  t.true(performance.now() - started >= 45);
  const controller = new AbortController();
  const waiting = bucket.take(100_000, controller.signal);
  controller.abort(new Error('stopped'));
  await t.throwsAsync(waiting, { message: 'stopped' });
});

test('a limit set after running unlimited applies', (t) => {
  const time = clock();
  const bucket = new TokenBucket(Infinity, 1000, time.now);
  t.is(bucket.reserve(10), 0);
  bucket.setLimit(100);
  time.advance(1);
  t.is(bucket.reserve(5000), 40_000);
});
