import test from 'ava';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BUNDLE, MODULES_OUT, NODE_FLAGS } from '../../app/build.js';
import { recipeName } from './lib/bitbake.js';
import {
  LTS_SERIES,
  checkKickstart,
  checkLayerConf,
  checkLicenses,
  checkNoCopies,
  checkSourceFiles,
  checkVersions,
  kickstartLayout,
  kickstartOf,
  loadLayer,
  repositoryLicenseFiles,
  resolveFileUrl,
  type Layer,
} from './lib/layer-checks.js';

// Checks a Yocto maintainer makes before a build, on the layer as it is (no bitbake here:
// Yocto cannot build on this machine), and on broken copies to show that they catch faults.
const LAYER = fileURLToPath(new URL('..', import.meta.url)).replace(/\/$/, '');
const REPO = fileURLToPath(new URL('../..', import.meta.url)).replace(/\/$/, '');
const BUILD_OUTPUTS = [BUNDLE, NODE_FLAGS, MODULES_OUT];
const GENIMAGE_RPI4 = join(REPO, 'board/rpi4/genimage.cfg');
const projectVersion = (
  JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as {
    version: string;
  }
).version;

const layer = loadLayer(LAYER, BUILD_OUTPUTS);

function recipe(l: Layer, pn: string, append = false) {
  const found = [...l.recipes].find(
    ([file]) => recipeName(file).pn === pn && file.endsWith(append ? '.bbappend' : '.bb'),
  );
  if (!found) throw new Error(`no recipe ${pn}`);
  return found[1];
}

/** Where a recipe's file:// entry comes from. */
function source(l: Layer, pn: string, path: string, append = false): string | undefined {
  const r = recipe(l, pn, append);
  if (!r.words('SRC_URI').some((url) => url.split(';')[0] === `file://${path}`)) return undefined;
  return resolveFileUrl(l, r, path);
}

/**
 * A copy of the layer beside a copy of the files its recipes take, to break on purpose. Its
 * genimage.cfg has the 4 MiB alignment the layer mirrors, whether or not the repository's has
 * it yet, so that each broken copy shows only the fault put in.
 */
function brokenCopy(t: { teardown: (fn: () => void) => void }): { repo: string; layer: string } {
  const repo = mkdtempSync(join(tmpdir(), 'meta-edge-test-'));
  t.teardown(() => rmSync(repo, { recursive: true, force: true }));
  cpSync(LAYER, join(repo, 'meta-edge'), {
    recursive: true,
    filter: (src) => !src.startsWith(join(LAYER, 'test')),
  });
  for (const dir of ['board', 'bootloader']) {
    cpSync(join(REPO, dir), join(repo, dir), { recursive: true });
  }
  const genimage = join(repo, 'board/rpi4/genimage.cfg');
  if (!/^\s*align\s*=/m.test(readFileSync(genimage, 'utf8'))) {
    edit(genimage, /hdimage \{\n/, 'hdimage {\n    align = 4M\n');
  }
  return { repo, layer: join(repo, 'meta-edge') };
}

/** The build outputs of a copied repository (it has none: they count as written by the build). */
const outputsIn = (repo: string): string[] =>
  BUILD_OUTPUTS.map((p) => join(repo, relative(REPO, p)));

const edit = (file: string, from: string | RegExp, to: string): void => {
  const text = readFileSync(file, 'utf8');
  const changed = text.replace(from, to);
  if (changed === text) throw new Error(`${file}: nothing to change for ${String(from)}`);
  writeFileSync(file, changed);
};

test('every recipe file BBFILES picks up parses, and layer.conf has what BitBake asks for', (t) => {
  t.true(layer.recipes.size >= 8, [...layer.recipes.keys()].join('\n'));
  t.deepEqual(checkLayerConf(layer), []);
  t.is(layer.conf.get('BBFILE_COLLECTIONS')?.trim(), 'edge');
  const series = layer.conf.words('LAYERSERIES_COMPAT_edge');
  t.true(series.length > 0 && series.every((s) => LTS_SERIES.includes(s)), series.join(' '));
  t.is(layer.repo, REPO, 'EDGE_SRC_DIR defaults to the repository the layer lives in');
});

test('every file:// in every SRC_URI exists, through FILESEXTRAPATHS and the files folders', (t) => {
  t.deepEqual(checkSourceFiles(layer), []);
});

test('every LIC_FILES_CHKSUM matches, and CLOSED only while the repository has no license', (t) => {
  t.deepEqual(checkLicenses(layer), []);
  // Today the repository has no license file: the recipes say so (LICENSE = "CLOSED").
  t.deepEqual(repositoryLicenseFiles(REPO), []);
  t.is(recipe(layer, 'edge-server').get('LICENSE'), 'CLOSED');
});

test("recipe versions are the project's version (package.json)", (t) => {
  t.deepEqual(checkVersions(layer, projectVersion), []);
  t.is(recipe(layer, 'edge-server').get('PV'), projectVersion);
});

test('the kickstart agrees with board/rpi4/genimage.cfg partition for partition', (t) => {
  t.deepEqual(checkKickstart(layer, GENIMAGE_RPI4), []);
  const wks = kickstartLayout(readFileSync(kickstartOf(layer), 'utf8'));
  t.deepEqual(
    wks.partitions.map((p) => [p.fstype, p.bytes! / 2 ** 20, p.alignBytes! / 2 ** 20]),
    [
      ['vfat', 64, 4],
      ['ext4', 512, 4],
      ['none', 512, 4],
      ['ext4', 512, 4],
    ],
  );
});

test('p1 gets the files genimage puts there, and the slot image has the size of SLOT_IMAGE_MIB', (t) => {
  const image = recipe(layer, 'edge-image');
  const bootFiles = image
    .words('IMAGE_BOOT_FILES')
    .map((entry) => (entry.split(';')[1] ?? entry).split('/').pop()!);
  const genimage = readFileSync(GENIMAGE_RPI4, 'utf8');
  const vfatFiles = /files\s*=\s*\{([^}]*)\}/.exec(genimage)![1]!.match(/"[^"]+"/g)!;
  t.deepEqual(bootFiles.sort(), vfatFiles.map((f) => f.slice(1, -1)).sort());

  const packages = readFileSync(join(REPO, 'board/common/packages.conf'), 'utf8');
  const slotMib = Number(/^SLOT_IMAGE_MIB=(\d+)$/m.exec(packages)![1]);
  t.is(Number(image.get('IMAGE_ROOTFS_SIZE')), slotMib * 1024);
  t.is(Number(image.get('IMAGE_ROOTFS_MAXSIZE')), slotMib * 1024);
  // The same filesystem UUID as build-image.sh's slot images.
  const buildImage = readFileSync(join(REPO, 'scripts/build-image.sh'), 'utf8');
  t.is(image.get('EDGE_SLOT_FS_UUID'), /^SLOT_FS_UUID=(\S+)$/m.exec(buildImage)![1]);
  t.is(resolve(image.get('MKE2FS_CONFIG')!), join(REPO, 'board/common/mke2fs.conf'));
  // p2 is the slot image itself (the one the update server publishes), not a rebuilt copy.
  const p2 = kickstartLayout(readFileSync(kickstartOf(layer), 'utf8')).partitions[1]!;
  t.is(p2.source, 'rawcopy');
  t.is(p2.label, undefined, 'a --label would make wic tune2fs the copy');
});

test('the boot script, fw_env.config and start script are the very files the image build uses', (t) => {
  const buildImage = readFileSync(join(REPO, 'scripts/build-image.sh'), 'utf8');
  const bootCmd = 'bootloader/uboot-env/boot.cmd';
  t.is(source(layer, 'u-boot', bootCmd, true), join(REPO, bootCmd));
  t.true(buildImage.includes(`"$ROOT/${bootCmd}"`));
  const abstate = 'bootloader/uboot-env/abstate.defaults';
  t.is(source(layer, 'u-boot', abstate, true), join(REPO, abstate));
  t.true(buildImage.includes(`"$ROOT/${abstate}"`));
  t.is(
    source(layer, 'u-boot', 'board/rpi4/uboot-env.txt', true),
    join(REPO, 'board/rpi4/uboot-env.txt'),
  );
  // The A/B state files are made with the same mkenvimage size as build-image.sh's.
  const ubootAppend = readFileSync(join(LAYER, 'recipes-bsp/u-boot/u-boot_%.bbappend'), 'utf8');
  t.regex(buildImage, /mkenvimage -p 0 -s 0x1000 -o "\$BOOTFILES\/abstate\$copy\.env"/);
  t.regex(ubootAppend, /mkenvimage -p 0 -s 0x1000 -o \$edge\/abstate\$copy\.env/);

  const fwEnv = 'bootloader/uboot-env/fw_env.config';
  t.is(source(layer, 'libubootenv', fwEnv, true), join(REPO, fwEnv));

  // The slot's start script: build-image.sh copies board/common/rootfs/ into the slot.
  t.true(buildImage.includes('cp -a "$ROOT/board/common/rootfs/." "$TREE/"'));
  for (const path of [
    'board/common/rootfs/usr/sbin/edge-server-run',
    'board/common/rootfs/usr/sbin/edge-trial-watchdog',
    'board/common/rootfs/etc/init.d/edge-clock-floor',
  ]) {
    t.is(source(layer, 'edge-server', path), join(REPO, path));
  }
  t.is(source(layer, 'edge-server', 'app/dist/edge-server.mjs'), BUNDLE);
  t.is(source(layer, 'edge-server', 'app/dist/node-flags.mjs'), NODE_FLAGS);
  t.is(source(layer, 'edge-config', 'app/dist/modules'), MODULES_OUT);
  t.deepEqual(checkNoCopies(layer), []);
});

test("the edge server runs on nodejs from meta-oe under poky's sysvinit", (t) => {
  const server = recipe(layer, 'edge-server');
  t.regex(server.get('RDEPENDS:edge-server') ?? '', /\bnodejs \(>= 20\.19\)/);
  t.is(server.get('REQUIRED_DISTRO_FEATURES'), 'sysvinit');
  // The clock floor: set after mountall.sh (S03) and bootmisc.sh (S36) at boot, noted before
  // umountfs (S40) at shutdown and reboot; the project's rcS and rcK run the same script.
  t.is(server.get('INITSCRIPT_NAME'), 'edge-clock-floor');
  const [, start, stop] = /^start (\d+) S \. stop (\d+) 0 6 \.$/.exec(
    server.get('INITSCRIPT_PARAMS') ?? '',
  ) ?? [undefined, '0', '99'];
  t.true(Number(start) > 36 && Number(stop) < 40, server.get('INITSCRIPT_PARAMS'));
  for (const script of ['rcS', 'rcK']) {
    const text = readFileSync(join(REPO, 'board/common/rootfs/etc/init.d', script), 'utf8');
    t.regex(text, /^\/etc\/init\.d\/edge-clock-floor (start|stop)$/m, script);
  }
  const kas = readFileSync(join(LAYER, 'kas/raspberrypi4-64.yml'), 'utf8');
  t.regex(kas, /^machine: raspberrypi4-64$/m);
  t.regex(kas, /^distro: poky$/m);
  t.regex(kas, /^target: edge-image$/m);
  t.regex(kas, /RPI_USE_U_BOOT = "1"/);
  t.regex(kas, /ENABLE_UART = "1"/);
  for (const layerName of ['meta:', 'meta-poky:', 'meta-oe:', 'meta-edge:']) {
    t.true(kas.includes(`      ${layerName}\n`), layerName);
  }
  // Every repository is pinned to a commit on a branch this layer is compatible with.
  const series = layer.conf.words('LAYERSERIES_COMPAT_edge');
  const branches = [...kas.matchAll(/^ {4}branch: (\S+)$/gm)].map((m) => m[1]);
  const commits = [...kas.matchAll(/^ {4}commit: ([0-9a-f]{40})$/gm)];
  t.is(branches.length, 3);
  t.is(commits.length, 3);
  t.true(
    branches.every((b) => series.includes(b!)),
    branches.join(' '),
  );
});

test('a missing SRC_URI file is caught', (t) => {
  const copy = brokenCopy(t);
  edit(
    join(copy.layer, 'recipes-edge/edge-server/edge-server_0.1.0.bb'),
    'file://board/common/rootfs/usr/sbin/edge-server-run',
    'file://board/common/rootfs/usr/sbin/edge-server-start',
  );
  const problems = checkSourceFiles(loadLayer(copy.layer, outputsIn(copy.repo)));
  t.is(problems.length, 1, problems.join('\n'));
  t.regex(problems[0]!, /edge-server_0\.1\.0\.bb: SRC_URI .*edge-server-start: no such file/);
});

test('an md5 that does not match its license file is caught, and CLOSED beside a license', (t) => {
  const copy = brokenCopy(t);
  writeFileSync(join(copy.repo, 'LICENSE'), 'Permission is hereby granted...\n');
  const recipeFile = join(copy.layer, 'recipes-edge/edge-server/edge-server_0.1.0.bb');
  edit(
    recipeFile,
    'LICENSE = "CLOSED"',
    'LICENSE = "MIT"\nLIC_FILES_CHKSUM = "file://LICENSE;md5=00000000000000000000000000000000"',
  );
  edit(recipeFile, 'SRC_URI = " \\', 'SRC_URI = " \\\n    file://LICENSE \\');
  const problems = checkLicenses(loadLayer(copy.layer, outputsIn(copy.repo)));
  t.true(
    problems.some((p) =>
      /edge-server_0\.1\.0\.bb: LIC_FILES_CHKSUM LICENSE: md5 is [0-9a-f]{32}, not 0{32}/.test(p),
    ),
    problems.join('\n'),
  );
  t.true(problems.some((p) => /edge-config.*CLOSED but the repository has LICENSE/.test(p)));

  // With the right md5 the recipe passes.
  const md5 = /md5 is ([0-9a-f]{32})/.exec(problems.join('\n'))![1]!;
  edit(recipeFile, '0'.repeat(32), md5);
  const after = checkLicenses(loadLayer(copy.layer, outputsIn(copy.repo)));
  t.false(
    after.some((p) => p.includes('edge-server_0.1.0.bb')),
    after.join('\n'),
  );
});

test('a partition size, type or alignment that differs from genimage.cfg is caught', (t) => {
  const copy = brokenCopy(t);
  const wks = join(copy.layer, 'wic/edge-ab.wks.in');
  edit(wks, /--fixed-size 64M/, '--fixed-size 32M');
  edit(wks, /--system-id 0x0c/, '--system-id 0x0b');
  const problems = checkKickstart(
    loadLayer(copy.layer),
    join(copy.repo, 'board/rpi4/genimage.cfg'),
  );
  t.deepEqual(problems, [
    'p1 (boot): partition type genimage 0x0c, wks 0x0b',
    'p1 (boot): size genimage 67108864 bytes, wks 33554432 bytes',
  ]);
  edit(wks, /(part \/data .*)--align 4096/, '$1--align 1024');
  const aligned = checkKickstart(loadLayer(copy.layer), join(copy.repo, 'board/rpi4/genimage.cfg'));
  t.true(
    aligned.some((p) => /^p4 \(data\): alignment genimage 4194304 bytes, wks 1048576$/.test(p)),
  );

  // A partition dropped from the kickstart.
  edit(wks, /^part --ondisk.*\n/m, '');
  const fewer = checkKickstart(loadLayer(copy.layer), join(copy.repo, 'board/rpi4/genimage.cfg'));
  t.true(fewer.includes('partition count: genimage 4, wks 3'), fewer.join('\n'));
});

test('a copy of boot.cmd or fw_env.config in the layer is caught', (t) => {
  const copy = brokenCopy(t);
  cpSync(
    join(copy.repo, 'bootloader/uboot-env/boot.cmd'),
    join(copy.layer, 'recipes-bsp/u-boot/files/boot.cmd'),
  );
  cpSync(
    join(copy.repo, 'bootloader/uboot-env/fw_env.config'),
    join(copy.layer, 'recipes-bsp/libubootenv/files/env.config'),
  );
  const problems = checkNoCopies(loadLayer(copy.layer));
  t.deepEqual(problems.sort(), [
    'recipes-bsp/libubootenv/files/env.config is a copy of bootloader/uboot-env/fw_env.config',
    'recipes-bsp/u-boot/files/boot.cmd is a copy of bootloader/uboot-env/boot.cmd',
  ]);
});

test('a recipe whose version is not the project version is caught', (t) => {
  const copy = brokenCopy(t);
  const from = join(copy.layer, 'recipes-edge/edge-config/edge-config_0.1.0.bb');
  cpSync(from, join(copy.layer, 'recipes-edge/edge-config/edge-config_0.0.9.bb'));
  rmSync(from);
  t.deepEqual(checkVersions(loadLayer(copy.layer), projectVersion), [
    `recipes-edge/edge-config/edge-config_0.0.9.bb: version 0.0.9, the project's is ${projectVersion}`,
  ]);
});
