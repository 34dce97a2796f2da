import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { basename, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { readLayerConf, readRecipe, recipeName, type Datastore } from './bitbake.js';
import { diskLayout, parseGenimage, type DiskLayout } from './genimage.js';
import { parseKickstart, wicBytes, type KickstartPartition } from './wks.js';

/**
 * The checks a Yocto maintainer makes on meta-edge before a build, as functions that return
 * what is wrong (empty: nothing). They read the layer and the repository it builds from.
 */

/** The OVERRIDES of a raspberrypi4-64 build with poky (target recipes). */
export const RPI4_OVERRIDES = [
  'linux',
  'aarch64',
  'class-target',
  'poky',
  'armv8a',
  'rpi',
  'raspberrypi4',
  'raspberrypi4-64',
];

/** Yocto's long-term support series (https://wiki.yoctoproject.org/wiki/Releases). */
export const LTS_SERIES = ['dunfell', 'kirkstone', 'scarthgap', 'wrynose'];

export interface Layer {
  dir: string;
  /** The repository the recipes take their files from (EDGE_SRC_DIR). */
  repo: string;
  conf: Datastore;
  /** Every .bb and .bbappend, read on top of conf/layer.conf. */
  recipes: Map<string, Datastore>;
  /** Files `npm run build` writes: they may be missing from a fresh checkout. */
  buildOutputs: string[];
}

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === 'node_modules' ? [] : walk(path);
    return [path];
  });
}

export function loadLayer(dir: string, buildOutputs: string[] = []): Layer {
  const conf = readLayerConf(dir, RPI4_OVERRIDES);
  const repo = resolve(conf.get('EDGE_SRC_DIR') ?? dir);
  const recipes = new Map<string, Datastore>();
  for (const file of walk(dir)
    .filter((f) => /\.(bb|bbappend)$/.test(f))
    .sort()) {
    recipes.set(file, readRecipe(file, conf));
  }
  return { dir, repo, conf, recipes, buildOutputs };
}

const isImage = (recipe: Datastore): boolean =>
  recipe.inherits.some((name) => name === 'image' || name === 'core-image');

/** Splits `file://path;param=value;...` into the path and its parameters. */
function fileUrl(url: string): { path: string; params: Record<string, string> } | undefined {
  if (!url.startsWith('file://')) return undefined;
  const [path, ...params] = url.slice('file://'.length).split(';');
  return {
    path: path!,
    params: Object.fromEntries(params.map((p) => p.split('=', 2) as [string, string])),
  };
}

/** The directories BitBake's FILESPATH searches for file:// (without per-override subfolders). */
export function filesPath(recipe: Datastore): string[] {
  const extra = (recipe.get('FILESEXTRAPATHS') ?? '').split(':').filter(Boolean);
  const thisDir = recipe.get('THISDIR')!;
  return [
    ...extra,
    join(thisDir, recipe.get('BP')!),
    join(thisDir, recipe.get('BPN')!),
    join(thisDir, 'files'),
  ].map((dir) => resolve(dir));
}

/** Where a file:// of a recipe's SRC_URI comes from, or undefined when BitBake finds none. */
export function resolveFileUrl(layer: Layer, recipe: Datastore, path: string): string | undefined {
  const candidates = isAbsolute(path) ? [path] : filesPath(recipe).map((dir) => join(dir, path));
  return (
    candidates.find((candidate) => existsSync(candidate)) ??
    candidates.find((candidate) => isBuildOutput(layer, candidate))
  );
}

function isBuildOutput(layer: Layer, path: string): boolean {
  return layer.buildOutputs.some((output) => path === output || path.startsWith(output + sep));
}

const short = (layer: Layer, path: string): string => relative(layer.dir, path) || path;

/** Every file:// in every SRC_URI exists (or is written by `npm run build`). */
export function checkSourceFiles(layer: Layer): string[] {
  const problems: string[] = [];
  for (const [file, recipe] of layer.recipes) {
    for (const url of recipe.words('SRC_URI')) {
      const parsed = fileUrl(url);
      if (!parsed) continue;
      if (parsed.path.includes('${')) {
        problems.push(`${short(layer, file)}: SRC_URI ${url}: unexpanded variable`);
      } else if (!resolveFileUrl(layer, recipe, parsed.path)) {
        problems.push(`${short(layer, file)}: SRC_URI ${url}: no such file in FILESPATH`);
      }
    }
  }
  return problems;
}

/** The md5 BitBake's license check computes (lines beginline..endline when given). */
export function licenseMd5(path: string, params: Record<string, string>): string {
  const content = readFileSync(path);
  const begin = Number(params.beginline ?? 0);
  const end = Number(params.endline ?? 0);
  if (!begin && !end) return createHash('md5').update(content).digest('hex');
  const hash = createHash('md5');
  let lineNo = 0;
  let start = 0;
  for (let i = 0; i <= content.length; i++) {
    if (i === content.length || content[i] === 0x0a) {
      lineNo++;
      const line = content.subarray(start, Math.min(i + 1, content.length));
      if (line.length > 0 && lineNo >= begin && (!end || lineNo <= end)) hash.update(line);
      start = i + 1;
    }
  }
  return hash.digest('hex');
}

/** The repository's license files, as a recipe's LIC_FILES_CHKSUM would name them. */
export function repositoryLicenseFiles(repo: string): string[] {
  return readdirSync(repo).filter((name) => /^(LICEN[CS]E|COPYING)(\..*)?$/i.test(name));
}

/**
 * Every LIC_FILES_CHKSUM md5 matches the file it names (relative to S, the recipe's fetched
 * files); a recipe says CLOSED only while the repository has no license file.
 */
export function checkLicenses(layer: Layer): string[] {
  const problems: string[] = [];
  const licenseFiles = repositoryLicenseFiles(layer.repo);
  for (const [file, recipe] of layer.recipes) {
    if (file.endsWith('.bbappend')) continue;
    const name = short(layer, file);
    const license = recipe.get('LICENSE');
    const checksums = recipe.words('LIC_FILES_CHKSUM');
    if (!license) problems.push(`${name}: no LICENSE`);
    if (license === 'CLOSED') {
      if (licenseFiles.length > 0) {
        problems.push(
          `${name}: LICENSE is CLOSED but the repository has ${licenseFiles.join(', ')}: name it in LIC_FILES_CHKSUM`,
        );
      }
    } else if (license && checksums.length === 0 && !isImage(recipe)) {
      problems.push(`${name}: LICENSE ${license} without LIC_FILES_CHKSUM`);
    }
    for (const url of checksums) {
      const parsed = fileUrl(url);
      if (!parsed) {
        problems.push(`${name}: LIC_FILES_CHKSUM ${url}: not a file:// entry`);
        continue;
      }
      const md5 = parsed.params.md5;
      const path = isAbsolute(parsed.path)
        ? parsed.path
        : resolveFileUrl(layer, recipe, parsed.path);
      if (!md5) problems.push(`${name}: LIC_FILES_CHKSUM ${url}: no md5`);
      else if (!path || !existsSync(path)) {
        problems.push(`${name}: LIC_FILES_CHKSUM ${url}: no such file`);
      } else {
        const actual = licenseMd5(path, parsed.params);
        if (actual !== md5) {
          problems.push(`${name}: LIC_FILES_CHKSUM ${parsed.path}: md5 is ${actual}, not ${md5}`);
        }
      }
    }
  }
  return problems;
}

/** Every recipe but the images carries the project's version (in its file name or PV). */
export function checkVersions(layer: Layer, projectVersion: string): string[] {
  const problems: string[] = [];
  for (const [file, recipe] of layer.recipes) {
    if (file.endsWith('.bbappend') || isImage(recipe)) continue;
    const fromName = recipeName(file).pv;
    const pv = recipe.get('PV');
    if (!fromName && pv === '1.0') {
      problems.push(`${short(layer, file)}: no version (name_<version>.bb or PV)`);
    } else if (pv !== projectVersion) {
      problems.push(`${short(layer, file)}: version ${pv}, the project's is ${projectVersion}`);
    }
  }
  return problems;
}

/** The partitions of the layer's kickstart, in the terms of genimage's layout. */
export interface KickstartLayout {
  partitions: {
    mountpoint?: string;
    systemId?: number;
    active: boolean;
    bytes?: number;
    fstype: string;
    label?: string;
    fsuuid?: string;
    alignBytes?: number;
    source?: string;
  }[];
  ptable: string;
}

export function kickstartLayout(text: string): KickstartLayout {
  const kickstart = parseKickstart(text);
  const value = (part: KickstartPartition, key: string): string | undefined => {
    const v = part.options[key];
    return typeof v === 'string' ? v : undefined;
  };
  return {
    ptable: value({ line: 0, options: kickstart.bootloader }, 'ptable') ?? 'msdos',
    partitions: kickstart.partitions.map((part) => {
      const size = value(part, 'fixed-size') ?? value(part, 'size');
      const systemId = value(part, 'system-id');
      const align = value(part, 'align');
      const label = value(part, 'label');
      const fsuuid = value(part, 'fsuuid');
      const source = value(part, 'source');
      return {
        ...(part.mountpoint ? { mountpoint: part.mountpoint } : {}),
        ...(systemId === undefined ? {} : { systemId: Number(systemId) }),
        active: part.options.active === true,
        ...(size === undefined ? {} : { bytes: wicBytes(size) }),
        fstype: value(part, 'fstype') ?? 'vfat',
        ...(label === undefined ? {} : { label }),
        ...(fsuuid === undefined ? {} : { fsuuid }),
        ...(align === undefined ? {} : { alignBytes: Number(align) * 1024 }),
        ...(source === undefined ? {} : { source }),
      };
    }),
  };
}

const hex = (n: number | undefined): string =>
  n === undefined ? 'unset' : `0x${n.toString(16).padStart(2, '0')}`;

/** The kickstart and genimage.cfg agree partition for partition. */
export function compareLayouts(genimage: DiskLayout, wks: KickstartLayout): string[] {
  const problems: string[] = [];
  const tables: Record<string, string> = { mbr: 'msdos', gpt: 'gpt' };
  if (tables[genimage.tableType] !== wks.ptable) {
    problems.push(`partition table: genimage ${genimage.tableType}, wks ${wks.ptable}`);
  }
  if (genimage.partitions.length !== wks.partitions.length) {
    problems.push(
      `partition count: genimage ${genimage.partitions.length}, wks ${wks.partitions.length}`,
    );
  }
  genimage.partitions.forEach((g, index) => {
    const w = wks.partitions[index];
    if (!w) return;
    const p = `p${index + 1} (${g.name})`;
    if (g.partitionType !== w.systemId) {
      problems.push(
        `${p}: partition type genimage ${hex(g.partitionType)}, wks ${hex(w.systemId)}`,
      );
    }
    if (g.bootable !== w.active) {
      problems.push(`${p}: bootable genimage ${g.bootable}, wks --active ${w.active}`);
    }
    if (g.bytes !== w.bytes) {
      problems.push(`${p}: size genimage ${g.bytes} bytes, wks ${w.bytes} bytes`);
    }
    // rootfs.ext4 comes from the build (mke2fs -t ext4): the wks copies the slot image in.
    const gFs = g.externalImage === 'rootfs.ext4' ? 'ext4' : g.fstype;
    if (gFs !== w.fstype) problems.push(`${p}: filesystem genimage ${gFs}, wks ${w.fstype}`);
    if (g.label !== undefined && w.label !== undefined && g.label !== w.label) {
      problems.push(`${p}: label genimage ${g.label}, wks ${w.label}`);
    }
    if (g.volumeId !== undefined && Number(`0x${g.volumeId}`) !== Number(w.fsuuid)) {
      problems.push(`${p}: FAT volume id genimage ${g.volumeId}, wks --fsuuid ${w.fsuuid}`);
    }
    if (w.alignBytes !== genimage.alignBytes) {
      problems.push(
        `${p}: alignment genimage ${genimage.alignBytes} bytes, wks ${w.alignBytes ?? 'unset'}`,
      );
    }
  });
  return problems;
}

/** The layer's kickstart file (WKS_FILE of the image recipe, in wic/). */
export function kickstartOf(layer: Layer, image = 'edge-image'): string {
  const recipe = [...layer.recipes].find(([file]) => recipeName(file).pn === image)?.[1];
  if (!recipe) throw new Error(`no ${image} recipe`);
  const wks = recipe.get('WKS_FILE');
  if (!wks) throw new Error(`${image}: no WKS_FILE`);
  return join(layer.dir, 'wic', wks);
}

export function checkKickstart(layer: Layer, genimageCfg: string): string[] {
  const genimage = diskLayout(parseGenimage(readFileSync(genimageCfg, 'utf8')));
  return compareLayouts(genimage, kickstartLayout(readFileSync(kickstartOf(layer), 'utf8')));
}

const sha256 = (path: string): string =>
  createHash('sha256').update(readFileSync(path)).digest('hex');

/**
 * The repository files the layer's recipes take (boot.cmd, fw_env.config, the start script...)
 * come from the repository itself: no file in the layer has the name or the content of one.
 */
export function checkNoCopies(layer: Layer): string[] {
  const taken = new Map<string, string>(); // repository file -> its sha256
  for (const recipe of layer.recipes.values()) {
    for (const url of recipe.words('SRC_URI')) {
      const parsed = fileUrl(url);
      const path = parsed && resolveFileUrl(layer, recipe, parsed.path);
      if (!path || !existsSync(path) || path.startsWith(layer.dir + sep)) continue;
      const files = statSync(path).isDirectory() ? walk(path) : [path];
      for (const f of files) taken.set(f, sha256(f));
    }
  }
  const names = new Set([...taken.keys()].map((f) => basename(f)));
  const hashes = new Map([...taken].map(([f, h]) => [h, f]));
  const problems: string[] = [];
  for (const file of walk(layer.dir)) {
    if (file.startsWith(join(layer.dir, 'test') + sep)) continue;
    const original = hashes.get(sha256(file));
    if (original) {
      problems.push(`${short(layer, file)} is a copy of ${relative(layer.repo, original)}`);
    } else if (names.has(basename(file)) && !/\.(bb|bbappend)$/.test(file)) {
      problems.push(`${short(layer, file)} has the name of a repository file the recipes take`);
    }
  }
  return problems;
}

/** conf/layer.conf sets what BitBake and the Yocto Project Compatible checks ask for. */
export function checkLayerConf(layer: Layer): string[] {
  const problems: string[] = [];
  const conf = layer.conf;
  const collection = conf.words('BBFILE_COLLECTIONS');
  if (collection.length !== 1) problems.push(`BBFILE_COLLECTIONS: ${collection.join(' ')}`);
  const name = collection[0] ?? '';
  for (const variable of [
    'BBFILE_PATTERN',
    'BBFILE_PRIORITY',
    'LAYERSERIES_COMPAT',
    'LAYERDEPENDS',
  ]) {
    if (!conf.get(`${variable}_${name}`)) problems.push(`no ${variable}_${name}`);
  }
  if (!/^\d+$/.test(conf.get(`BBFILE_PRIORITY_${name}`) ?? '')) {
    problems.push(`BBFILE_PRIORITY_${name} is not a number`);
  }
  const series = conf.words(`LAYERSERIES_COMPAT_${name}`);
  for (const s of series) {
    if (!LTS_SERIES.includes(s)) problems.push(`LAYERSERIES_COMPAT_${name}: ${s} is not an LTS`);
  }
  const depends = conf.words(`LAYERDEPENDS_${name}`);
  for (const needed of ['core', 'raspberrypi']) {
    if (!depends.includes(needed)) problems.push(`LAYERDEPENDS_${name} lacks ${needed}`);
  }
  // Every recipe file is one BBFILES picks up (globs: * within a path part).
  const globs = conf.words('BBFILES').map(
    (glob) =>
      new RegExp(
        `^${glob
          .split('*')
          .map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
          .join('[^/]*')}$`,
      ),
  );
  for (const file of layer.recipes.keys()) {
    if (!globs.some((glob) => glob.test(file))) {
      problems.push(`${short(layer, file)} is not in BBFILES`);
    }
  }
  return problems;
}
