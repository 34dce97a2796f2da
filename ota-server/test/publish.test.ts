import test from 'ava';
import type { ExecutionContext } from 'ava';
import {
  appendFile,
  copyFile,
  cp,
  readdir,
  readFile,
  rm,
  truncate,
  writeFile,
} from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { PublishError } from '../src/publish/errors.js';
import {
  publishRelease,
  type PublishOptions,
  type PublishProgress,
} from '../src/publish/publish-release.js';
import type { DeltaMaker } from '../src/publish/delta-maker.js';
import { publishedImages } from '../src/repository/published-images.js';
import {
  ext4Image,
  fakeDeltaMaker,
  newRepository,
  sha256,
  tempDir,
  treeDigest,
} from './helpers/fixtures.js';

// publish: checks first, deltas from the newest releases, one addTargets call; every refusal
// leaves the repository byte for byte as it was.

// mke2fs runs once per release for the file; each test gets its own copy (some cut or grow it).
let pristineDir: Promise<string> | undefined;
const pristine = new Map<string, Promise<string>>();
test.after.always(async () => {
  if (pristineDir) await rm(await pristineDir, { recursive: true, force: true });
  const repo = await released?.catch(() => undefined);
  if (repo) await rm(dirname(repo), { recursive: true, force: true });
});

function pristineImage(version: string): Promise<string> {
  let made = pristine.get(version);
  if (!made) {
    made = (async () =>
      ext4Image(await (pristineDir ??= tempDir(null, 'pristine')), `${version}.img`, {
        'version.txt': `${version}\n`,
      }))();
    pristine.set(version, made);
  }
  return made;
}

/** 1.0.0 and 1.1.0 published, made once: each refusal test works on its own copy. */
let released: Promise<string> | undefined;
function releasedRepository(): Promise<string> {
  released ??= (async () => {
    const repo = await newRepository(null);
    for (const version of ['1.0.0', '1.1.0']) {
      await publishRelease({
        repoDir: repo,
        board: 'rpi4',
        version,
        imagePath: await pristineImage(version),
        makeDelta: fakeDeltaMaker,
      });
    }
    return repo;
  })();
  return released;
}

/** A new repository, or a copy of `copyOf`, with helpers that make images and publish. */
async function setUp(t: ExecutionContext, copyOf?: string) {
  let repo: string;
  if (copyOf) {
    repo = join(await tempDir(t, 'repo'), 'repo');
    await cp(copyOf, repo, { recursive: true });
  } else {
    repo = await newRepository(t);
  }
  const images = await tempDir(t, 'images');
  const image = async (version: string) => {
    const path = join(images, `${version}.img`);
    await copyFile(await pristineImage(version), path);
    return path;
  };
  const publish = (version: string, imagePath: string, extra: Partial<PublishOptions> = {}) =>
    publishRelease({
      repoDir: repo,
      board: 'rpi4',
      version,
      imagePath,
      makeDelta: fakeDeltaMaker,
      ...extra,
    });
  return { repo, images, image, publish };
}

test('the first release has no delta; later ones have deltas from the newest N releases', async (t) => {
  const { repo, image, publish } = await setUp(t);
  const first = await publish('1.0.0', await image('1.0.0'));
  t.deepEqual(first.added, ['rpi4/1.0.0/rootfs.ext4']);
  t.deepEqual(first.deltaTargets, []);
  await publish('1.1.0', await image('1.1.0'));
  await publish('1.2.0-rc.1', await image('1.2.0-rc.1'));

  const events: PublishProgress[] = [];
  const v2 = await image('1.2.0');
  const result = await publish('1.2.0', v2, { onProgress: (event) => events.push(event) });
  t.deepEqual(result.added.sort(), [
    'rpi4/1.2.0/rootfs.ext4',
    'rpi4/1.2.0/rootfs.from-1.1.0.bsdiff',
    'rpi4/1.2.0/rootfs.from-1.2.0-rc.1.bsdiff',
  ]);
  t.like(events[0], { step: 'checked', previous: ['1.2.0-rc.1', '1.1.0'] });
  t.true(events.some((event) => event.step === 'delta' && event.progress.bytesDone === 2));
  t.is(events.at(-1)?.step, 'signing');

  // Each delta was made from the right published image to the new one.
  const byVersion = new Map(
    (await publishedImages(repo, 'rpi4')).map((entry) => [entry.version, entry]),
  );
  const deltaFile = async (source: string) => {
    const folder = join(repo, 'targets', 'rpi4', '1.2.0');
    const name = (await readdir(folder)).find((file) =>
      file.endsWith(`.rootfs.from-${source}.bsdiff`),
    )!;
    return readFile(join(folder, name), 'utf8');
  };
  t.is(
    await deltaFile('1.1.0'),
    `fake delta ${byVersion.get('1.1.0')!.sha256} -> ${sha256(await readFile(v2))}\n`,
  );
  t.is(byVersion.get('1.2.0')!.length, (await readFile(v2)).length);

  const one = await publish('1.3.0', await image('1.3.0'), { deltaCount: 1 });
  t.deepEqual(one.deltaTargets, ['rpi4/1.3.0/rootfs.from-1.2.0.bsdiff']);
  const none = await publish('1.4.0', await image('1.4.0'), { deltaCount: 0 });
  t.deepEqual(none.deltaTargets, []);
  // The versions the fleet runs, whatever their age.
  const chosen = await publish('1.5.0', await image('1.5.0'), { deltaFrom: ['1.0.0', '1.3.0'] });
  t.deepEqual(chosen.deltaTargets.sort(), [
    'rpi4/1.5.0/rootfs.from-1.0.0.bsdiff',
    'rpi4/1.5.0/rootfs.from-1.3.0.bsdiff',
  ]);
});

const refusals: [
  string,
  PublishError['code'],
  (ctx: Awaited<ReturnType<typeof setUp>>) => Promise<unknown>,
][] = [
  [
    'not an ext4 image',
    'IMAGE_INVALID',
    async ({ images, publish }) => {
      const file = join(images, 'text.img');
      await writeFile(file, 'x'.repeat(4096));
      return publish('2.0.0', file);
    },
  ],
  [
    'a truncated image',
    'IMAGE_INVALID',
    async ({ image, publish }) => {
      const file = await image('2.0.0');
      await truncate(file, 512 * 1024);
      return publish('2.0.0', file);
    },
  ],
  [
    'bytes past the filesystem',
    'IMAGE_INVALID',
    async ({ image, publish }) => {
      const file = await image('2.0.0');
      await appendFile(file, Buffer.alloc(4096));
      return publish('2.0.0', file);
    },
  ],
  [
    'a missing file',
    'IMAGE_INVALID',
    ({ images, publish }) => publish('2.0.0', join(images, 'none.img')),
  ],
  [
    'a board name with a slash',
    'BOARD_INVALID',
    async ({ image, publish }) => publish('2.0.0', await image('2.0.0'), { board: '../rpi4' }),
  ],
  [
    'a board name with a space',
    'BOARD_INVALID',
    async ({ image, publish }) => publish('2.0.0', await image('2.0.0'), { board: 'rpi 4' }),
  ],
  [
    'a version that is not semver',
    'VERSION_INVALID',
    async ({ image, publish }) => publish('2.0', await image('2.0')),
  ],
  [
    'a version with a leading v',
    'VERSION_INVALID',
    async ({ image, publish }) => publish('v2.0.0', await image('v2')),
  ],
  [
    'the same version again',
    'VERSION_NOT_NEWER',
    async ({ image, publish }) => publish('1.1.0', await image('1.1.0b')),
  ],
  [
    'an older version',
    'VERSION_NOT_NEWER',
    async ({ image, publish }) => publish('1.0.9', await image('1.0.9')),
  ],
  [
    'a pre-release of the newest version',
    'VERSION_NOT_NEWER',
    async ({ image, publish }) => publish('1.1.0-rc.9', await image('1.1.0-rc.9')),
  ],
  [
    'a delta from a release that was never published',
    'DELTA_SOURCE_UNKNOWN',
    async ({ image, publish }) => publish('2.0.0', await image('2.0.0'), { deltaFrom: ['1.0.5'] }),
  ],
  [
    'a delta that fails (disk full)',
    'DELTA_FAILED',
    async ({ image, publish }) => {
      const diskFull: DeltaMaker = async (_old, _new, out) => {
        await writeFile(out, 'partial');
        throw Object.assign(new Error('ENOSPC: no space left on device, write'), {
          code: 'ENOSPC',
        });
      };
      return publish('2.0.0', await image('2.0.0'), { makeDelta: diskFull });
    },
  ],
];

for (const [what, code, attempt] of refusals) {
  test(`refused, repository unchanged: ${what}`, async (t) => {
    const context = await setUp(t, await releasedRepository());
    const before = await treeDigest(context.repo);
    const work = await tempDir(t, 'work');
    const error = await t.throwsAsync(
      attempt({
        ...context,
        publish: (version, path, extra = {}) =>
          context.publish(version, path, { workDir: work, ...extra }),
      }),
    );
    t.true(error instanceof PublishError, String(error));
    t.is((error as PublishError).code, code, error?.message);
    t.deepEqual(await treeDigest(context.repo), before);
    t.deepEqual(await readdir(work), [], 'no temporary file left');
  });
}

test('the default delta maker writes BSDIFF40 that stock bspatch applies', async (t) => {
  const { repo, image, images, publish } = await setUp(t);
  const v1 = await image('1.0.0');
  const v2 = await image('1.1.0');
  await publish('1.0.0', v1);
  const result = await publish('1.1.0', v2, { makeDelta: undefined });
  t.deepEqual(result.deltaTargets, ['rpi4/1.1.0/rootfs.from-1.0.0.bsdiff']);
  const folder = join(repo, 'targets', 'rpi4', '1.1.0');
  const delta = (await readdir(folder)).find((file) => file.endsWith('.bsdiff'))!;
  t.is((await readFile(join(folder, delta))).subarray(0, 8).toString(), 'BSDIFF40');
  const rebuilt = join(images, 'rebuilt.img');
  execFileSync('bspatch', [v1, rebuilt, join(folder, delta)]);
  t.is(sha256(await readFile(rebuilt)), sha256(await readFile(v2)));
});
