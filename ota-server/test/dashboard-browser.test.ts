import type { CheckInRequest } from '@edge/formats';
import test from 'ava';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import puppeteer, { type Page } from 'puppeteer-core';
import { buildDashboard } from '../dashboard/build.js';
import { hashPassword } from '../src/dashboard/password-hash.js';
import { openFleetStore } from '../src/fleet/open-store.js';
import { rolloutBucket } from '../src/fleet/rollout-policy.js';
import { publishRelease } from '../src/publish/publish-release.js';
import { SimulatedDevice } from './helpers/device.js';
import { ext4Image, fakeDeltaMaker, newRepository, tempDir } from './helpers/fixtures.js';
import { startPostgresCluster } from './helpers/postgres-cluster.js';
import { FLEET_TOKEN, startServer } from './helpers/test-server.js';

// The dashboard in Debian's chromium, against a real update server with PostgreSQL and a
// fleet of simulated devices: log in with the keyboard, watch counts change live, start and
// widen a roll-out, see a failed device's reason and the automatic pause.

// The page functions run in the browser; the root tsconfig has no DOM lib, so they see the
// little of it they use through these declarations.
interface PageElement {
  id: string;
  textContent: string | null;
  value: string;
}
declare const document: {
  querySelector(selector: string): PageElement | null;
  querySelectorAll(selector: string): ArrayLike<PageElement>;
  activeElement: PageElement | null;
  documentElement: { scrollWidth: number };
};
declare const location: { pathname: string; search: string };
declare const history: { back(): void };

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const ARTIFACTS = fileURLToPath(new URL('../../out/test-artifacts/dashboard/', import.meta.url));
const USERNAME = 'operator';
const PASSWORD = 'correct horse battery staple';
const FLEET_SIZE = 50;
const FAILURE_REASON = 'verify: sha256 of the standby slot does not match the target';
const WAIT = { timeout: 15_000 };

/** Waits until the element's text contains `text` (polled in the page, no reload). */
async function waitForText(page: Page, selector: string, text: string): Promise<void> {
  await page.waitForFunction(
    (sel: string, expected: string) =>
      document.querySelector(sel)?.textContent?.includes(expected) ?? false,
    WAIT,
    selector,
    text,
  );
}

async function textOf(page: Page, selector: string): Promise<string> {
  return page.evaluate(
    (sel: string) => document.querySelector(sel)?.textContent?.trim() ?? '',
    selector,
  );
}

/** Clicks an element once the view has rendered it. */
async function clickWhenShown(page: Page, selector: string): Promise<void> {
  await (await page.waitForSelector(selector, WAIT))!.click();
}

/** Replaces an input's value as a user would: select all, type. */
async function fill(page: Page, selector: string, text: string): Promise<void> {
  await clickWhenShown(page, selector);
  await page.keyboard.down('Control');
  await page.keyboard.press('a');
  await page.keyboard.up('Control');
  await page.keyboard.type(text);
}

test('an operator logs in, rolls out, watches it live and sees it pause itself', async (t) => {
  t.timeout(120_000);
  const started = Date.now();
  // The slow starts (initdb, chromium) run while the rest is set up.
  const clusterStarting = startPostgresCluster();
  t.teardown(async () => (await clusterStarting.catch(() => undefined))?.stop());
  const browserStarting = puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      ...(process.getuid?.() === 0 ? ['--no-sandbox'] : []),
      '--disable-gpu',
      '--disable-dev-shm-usage',
      '--no-first-run',
    ],
  });
  t.teardown(async () => (await browserStarting.catch(() => undefined))?.close());

  const [dashboardDir, repo, images] = await Promise.all([
    tempDir(t, 'dashboard'),
    newRepository(t),
    tempDir(t, 'images'),
    mkdir(ARTIFACTS, { recursive: true }),
  ]);
  const built = await buildDashboard(dashboardDir);
  t.log(built.map((file) => `${file.path.slice(dashboardDir.length + 1)} ${file.bytes} B`));
  for (const version of ['1.0.0', '1.1.0']) {
    const image = await ext4Image(images, `${version}.img`, { 'version.txt': version });
    await publishRelease({
      repoDir: repo,
      board: 'rpi4',
      version,
      imagePath: image,
      makeDelta: fakeDeltaMaker,
    });
  }

  const cluster = await clusterStarting;
  const store = await openFleetStore({
    dataDir: await tempDir(t, 'data'),
    databaseUrl: await cluster.createDatabase('dashboard'),
  });
  // Registered before the server's: teardowns run last first, so the store closes after it.
  t.teardown(() => store.close());
  const server = await startServer(t, repo, {
    store,
    config: { dashboardDir, rolloutSampleSeconds: 1 },
  });
  t.true(
    await store.addOperator({
      username: USERNAME,
      passwordHash: await hashPassword(PASSWORD),
      createdAt: new Date(),
    }),
  );

  const devices = Array.from(
    { length: FLEET_SIZE },
    (_, n) => new SimulatedDevice(`pi-${String(n).padStart(4, '0')}`),
  );
  await Promise.all(devices.map((device) => device.enroll(server.url, FLEET_TOKEN)));
  const checkIn = async (
    device: SimulatedDevice,
    version: string,
    update?: CheckInRequest['update'],
  ) => {
    const answer = await device.checkIn(server.url, version, update);
    if (answer.status !== 200)
      throw new Error(`check-in ${answer.status}: ${JSON.stringify(answer.body)}`);
  };
  await Promise.all(devices.map((device) => checkIn(device, '1.0.0')));

  const page = await (await browserStarting).newPage();
  await page.setViewport({ width: 1280, height: 900 });
  const requests: { url: string; type: string }[] = [];
  const problems: string[] = [];
  page.on('request', (request) =>
    requests.push({ url: request.url(), type: request.resourceType() }),
  );
  page.on('pageerror', (error) => problems.push(`page error: ${String(error)}`));
  page.on('console', (message) => {
    if (/Content.Security.Policy|Refused to/i.test(message.text())) problems.push(message.text());
  });

  // Keyboard only: Tab to the login form, type, Enter.
  const response = await page.goto(`${server.url}/dashboard/`, { waitUntil: 'domcontentloaded' });
  // The CSP is on: the 'nothing refused' check at the end means the page needs no inline code.
  t.regex(
    response?.headers()['content-security-policy'] ?? '',
    /script-src 'self'.*style-src 'self'|style-src 'self'.*script-src 'self'/,
  );
  await page.waitForSelector('#username', WAIT);
  let presses = 0;
  while ((await page.evaluate(() => document.activeElement?.id)) !== 'username') {
    t.true(++presses <= 5, 'Tab reaches the username field');
    await page.keyboard.press('Tab');
  }
  await page.keyboard.type(USERNAME);
  await page.keyboard.press('Tab');
  await page.keyboard.type('not the password');
  await page.keyboard.press('Enter');
  // The server's refusal shows in the alert region; the focus stays in the password field.
  await waitForText(page, '[role="alert"]', 'wrong username or password');
  await page.keyboard.down('Control');
  await page.keyboard.press('a');
  await page.keyboard.up('Control');
  await page.keyboard.type(PASSWORD);
  await page.keyboard.press('Enter');

  // The overview: every device up to date on 1.0.0.
  await waitForText(page, '[data-category="upToDate"]', String(FLEET_SIZE));
  t.is(await textOf(page, '[data-total]'), String(FLEET_SIZE));
  t.is(await textOf(page, '[data-version="rpi4/1.0.0"] [data-count]'), String(FLEET_SIZE));
  await waitForText(page, '.live', 'Live');
  await page.screenshot({ path: join(ARTIFACTS, 'overview-desktop.png'), fullPage: true });

  // Releases: the full image and each delta, with human-readable sizes.
  await clickWhenShown(page, '#main-nav a[href="/dashboard/releases"]');
  await waitForText(page, 'main table', 'from 1.0.0');
  t.regex(await textOf(page, 'main table'), /1\.0 MiB/);

  // Start a roll-out of 1.1.0 at 10%, pausing itself at 30% failures once 5 tried.
  await clickWhenShown(page, '#main-nav a[href="/dashboard/rollouts"]');
  await page.waitForSelector('#rollout-version option[value="1.1.0"]', WAIT);
  await page.select('#rollout-board', 'rpi4');
  await page.select('#rollout-version', '1.1.0');
  await fill(page, '#rollout-percent', '10');
  await fill(page, '#rollout-threshold', '30');
  await fill(page, '#rollout-min-devices', '5');
  await clickWhenShown(page, '::-p-text(Start roll-out)');
  await page.waitForSelector('[data-rollout-percent]', WAIT);
  await waitForText(page, '[data-rollout-percent]', '10%');
  const rolloutId = decodeURIComponent(
    (await page.evaluate(() => location.pathname)).split('/').pop()!,
  );
  t.truthy(rolloutId);

  // Widen to 50%: a confirmation dialog, answered with the keyboard.
  await fill(page, '#widen-percent', '50');
  await clickWhenShown(page, '::-p-text(Widen…)');
  await page.waitForSelector('dialog[open]', WAIT);
  t.regex(await textOf(page, 'dialog[open]'), /from 10% to 50%/);
  t.is(await page.evaluate(() => document.activeElement?.textContent), 'Go back');
  await page.keyboard.press('Tab');
  t.is(await page.evaluate(() => document.activeElement?.textContent), 'Widen to 50%');
  await page.keyboard.press('Enter');
  await waitForText(page, '[data-rollout-percent]', '50%');
  await page.waitForFunction(() => document.querySelector('dialog[open]') === null, WAIT);

  const targeted = devices.filter((device) => rolloutBucket(rolloutId, device.deviceId) < 50);
  t.true(targeted.length >= 9, `${targeted.length} devices in the 50%`);
  const [updated, failing] = [targeted.slice(0, 6), targeted.slice(6, 9)];

  // Devices check in: the overview follows live, without a reload.
  await clickWhenShown(page, '#main-nav a[href="/dashboard/"]');
  await page.waitForSelector(`[data-rollout="${rolloutId}"]`, WAIT);
  await Promise.all(updated.map((device) => checkIn(device, '1.1.0')));
  await waitForText(page, '[data-version="rpi4/1.1.0"] [data-count]', String(updated.length));
  await waitForText(
    page,
    `[data-rollout="${rolloutId}"] [data-counts]`,
    `${updated.length} of ${targeted.length} updated`,
  );

  // One device fails: its reason shows on its page, reached by the devices table's filter.
  await checkIn(failing[0]!, '1.0.0', {
    state: 'failed',
    targetVersion: '1.1.0',
    reason: FAILURE_REASON,
  });
  await waitForText(page, '[data-category="failed"]', '1');
  t.notRegex(await textOf(page, `[data-rollout="${rolloutId}"]`), /Paused/);
  await clickWhenShown(page, '#main-nav a[href="/dashboard/devices"]');
  await waitForText(page, 'table.devices tbody tr th', 'pi-0000');
  // Pages, sorting and filters are the server's; the URL keeps them.
  await page.select('#page-size', '25');
  await waitForText(page, '.pagination', 'Page 1 of 2');
  await clickWhenShown(page, 'table.devices thead th:first-child button');
  await waitForText(page, 'table.devices tbody tr th', `pi-00${FLEET_SIZE - 1}`);
  t.is(
    await page.evaluate(
      () => document.querySelector('table.devices thead th[aria-sort]')?.textContent,
    ),
    'Device▼, sort ascending',
  );
  t.regex(await page.evaluate(() => location.search), /order=desc/);
  await page.select('#filter-category', 'failed');
  await page.waitForFunction(
    () =>
      location.search.includes('category=failed') &&
      document.querySelectorAll('table.devices tbody tr').length === 1,
    WAIT,
  );
  await waitForText(page, 'table.devices tbody', failing[0]!.deviceId);
  await clickWhenShown(page, `table.devices a[href="/dashboard/devices/${failing[0]!.deviceId}"]`);
  await waitForText(page, '[data-failure-reason]', FAILURE_REASON);
  await page.screenshot({ path: join(ARTIFACTS, 'device-desktop.png'), fullPage: true });
  // Back returns to the filtered table (the filter lives in the URL).
  await page.evaluate(() => history.back());
  await page.waitForFunction(
    () =>
      location.search.includes('category=failed') &&
      document.querySelector('table.devices') !== null,
    WAIT,
  );
  t.is(await page.evaluate(() => document.querySelector('#filter-category')?.value), 'failed');

  // Two more fail: 3 of 9 tried is 33%, past the 30% threshold, and the roll-out pauses.
  await clickWhenShown(page, '#main-nav a[href="/dashboard/rollouts"]');
  await clickWhenShown(page, `a[href="/dashboard/rollouts/${rolloutId}"]`);
  await waitForText(page, '[data-rollout-state]', 'Active');
  await Promise.all(
    failing.slice(1).map((device) =>
      checkIn(device, '1.0.0', {
        state: 'failed',
        targetVersion: '1.1.0',
        reason: FAILURE_REASON,
      }),
    ),
  );
  await waitForText(page, '[data-rollout-state]', 'Paused');
  await waitForText(page, '[data-paused-reason]', '30%');
  t.log(`auto-pause: ${await textOf(page, '[data-paused-reason]')}`);
  t.is(await textOf(page, '[data-count="failed"]'), '3');
  await page.waitForSelector('.chart svg .series-updated', WAIT);
  await page.screenshot({ path: join(ARTIFACTS, 'rollout-desktop.png'), fullPage: true });

  // A phone-sized screen: nothing wider than it, the menu folds the navigation.
  await page.setViewport({ width: 375, height: 740 });
  t.is(await page.evaluate(() => document.documentElement.scrollWidth), 375);
  await page.screenshot({ path: join(ARTIFACTS, 'rollout-375.png'), fullPage: true });
  await clickWhenShown(page, '.menu-toggle');
  await clickWhenShown(page, '#main-nav a[href="/dashboard/"]');
  await waitForText(page, '[data-category="failed"]', '3');
  t.is(await page.evaluate(() => document.documentElement.scrollWidth), 375);
  await page.screenshot({ path: join(ARTIFACTS, 'overview-375.png'), fullPage: true });

  // The operator resumes (the guard waits for a further failure), then cancels.
  await clickWhenShown(page, '.menu-toggle');
  await clickWhenShown(page, '#main-nav a[href="/dashboard/rollouts"]');
  await clickWhenShown(page, `a[href="/dashboard/rollouts/${rolloutId}"]`);
  for (const [button, confirm, state] of [
    ['Resume…', 'Resume', 'Active'],
    ['Cancel roll-out…', 'Cancel roll-out', 'Cancelled'],
  ] as const) {
    await clickWhenShown(page, `::-p-text(${button})`);
    const confirmButton = 'dialog[open] .actions button:last-child';
    await waitForText(page, confirmButton, confirm);
    await clickWhenShown(page, confirmButton);
    await waitForText(page, '[data-rollout-state]', state);
  }

  // Everything the page asked for was under /dashboard on this server, loaded once.
  const origin = new URL(server.url).origin;
  const outside = requests.filter(({ url }) => {
    if (url.startsWith('data:')) return false;
    const parsed = new URL(url);
    return parsed.origin !== origin || !parsed.pathname.startsWith('/dashboard/');
  });
  t.deepEqual(outside, [], 'no request leaves /dashboard');
  t.is(requests.filter(({ type }) => type === 'document').length, 1, 'the page never reloaded');
  t.true(requests.some(({ type }) => type === 'eventsource'));
  t.deepEqual(problems, [], 'no script error, nothing refused by the CSP');
  t.log(`${requests.length} requests, ${((Date.now() - started) / 1000).toFixed(1)} s`);
});
