import test from 'ava';
import { ServerClock } from '../../src/ota/server-clock.js';

const at = (iso: string) => Date.parse(iso);

test('the clock follows the server by the Date of its answers', (t) => {
  let local = at('1970-01-01T00:00:10Z');
  const clock = new ServerClock(() => local);
  t.is(clock.now().getTime(), local, 'no answer yet: our own time');
  // Sent at 10.0 s, answered at 10.4 s; the server said 12:00:00 (so 12:00:00.0 to .999).
  clock.observe('Sun, 29 Nov 2026 12:00:00 GMT', local, local + 400);
  local += 400;
  const now = clock.now().getTime();
  t.true(Math.abs(now - at('2026-11-29T12:00:00.700Z')) <= 500, new Date(now).toISOString());
  local += 60_000;
  t.true(Math.abs(clock.now().getTime() - at('2026-11-29T12:01:00.700Z')) <= 500);
});

test('an answer without a usable Date changes nothing', (t) => {
  const clock = new ServerClock(() => 1000);
  clock.observe('Sun, 29 Nov 2026 12:00:00 GMT', 1000, 1000);
  const offset = clock.offsetMs;
  for (const header of [null, '', 'yesterday', 'Sun, 99 Foo 2026 99:99:99 GMT'])
    clock.observe(header, 1000, 1000);
  t.is(clock.offsetMs, offset);
});
