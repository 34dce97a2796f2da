import { Type, type Static } from '@sinclair/typebox';
import { TargetNameError } from './update-targets.js';

/**
 * Application releases: a board's WASM modules and their configuration, installed without a
 * reboot. Every file of release V is a TUF target, beside an index that lists them:
 *   <board>/apps/<version>/<relative path>   custom { kind: 'app-file', board, appVersion }
 *   <board>/apps/<version>/app.json          custom { kind: 'app', board, appVersion }
 * The device installs the files into <dataDir>/apps/<version>/<relative path>.
 */
export const APP_INDEX_FILE = 'app.json';
export const APP_INDEX_FORMAT = 'edge-app-release/1';

export interface AppFileTarget {
  kind: 'app-file';
  board: string;
  appVersion: string;
  /** Where the file goes in the release's folder: `modules/<name>/<name>.wasm`. */
  path: string;
}

export interface AppIndexTarget {
  kind: 'app';
  board: string;
  appVersion: string;
}

/** Board and version segments: the same rule as image target names. */
const SEGMENT = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/;
/** One segment of a file's path: plain names only, so it means the same on every file system. */
const PATH_SEGMENT = /^[A-Za-z0-9_][A-Za-z0-9._+-]{0,127}$/;
const MAX_PATH_LENGTH = 512;
const MAX_PATH_DEPTH = 8;
const MAX_FILES = 4096;
const SHA256_HEX = /^[0-9a-f]{64}$/;

/**
 * Checks a file's path inside an app release: relative, '/'-separated, no '..', no empty or
 * hidden segments, not the index's own name. Returns it, or throws TargetNameError.
 */
export function checkAppFilePath(path: string): string {
  const segments = path.split('/');
  const why =
    path.startsWith('/') || /^[A-Za-z]:/.test(path)
      ? 'an absolute path'
      : path.includes('\\')
        ? 'a backslash'
        : path.length > MAX_PATH_LENGTH
          ? `longer than ${MAX_PATH_LENGTH} characters`
          : segments.length > MAX_PATH_DEPTH
            ? `deeper than ${MAX_PATH_DEPTH} folders`
            : segments.some((segment) => segment === '..' || segment.includes('..'))
              ? "'..'"
              : path === APP_INDEX_FILE
                ? `the index's own name`
                : segments.some((segment) => !PATH_SEGMENT.test(segment))
                  ? 'an empty or hidden segment, or characters other than letters, digits and . _ + -'
                  : undefined;
  if (why !== undefined) {
    throw new TargetNameError(`app file path '${path}': ${why} is not allowed`);
  }
  return path;
}

export function appFileTargetName(board: string, appVersion: string, path: string): string {
  return `${appReleasePrefix(board, appVersion)}${checkAppFilePath(path)}`;
}

export function appIndexTargetName(board: string, appVersion: string): string {
  return `${appReleasePrefix(board, appVersion)}${APP_INDEX_FILE}`;
}

/** `<board>/apps/<version>/`: every target of one app release starts with it. */
export function appReleasePrefix(board: string, appVersion: string): string {
  return `${checkSegment('board', board)}/apps/${checkSegment('app version', appVersion)}/`;
}

export function appTargetNameOf(target: AppFileTarget | AppIndexTarget): string {
  return target.kind === 'app'
    ? appIndexTargetName(target.board, target.appVersion)
    : appFileTargetName(target.board, target.appVersion, target.path);
}

/** One file of the release, as the index lists it. */
export const AppIndexFile = Type.Object(
  {
    path: Type.String({ minLength: 1, maxLength: MAX_PATH_LENGTH }),
    length: Type.Integer({ minimum: 0 }),
    sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }),
  },
  { additionalProperties: false },
);
export type AppIndexFile = Static<typeof AppIndexFile>;

/** The index target's content (JSON): what the release's folder holds, file by file. */
export const AppIndex = Type.Object(
  {
    format: Type.Literal(APP_INDEX_FORMAT),
    board: Type.String({ pattern: SEGMENT.source }),
    version: Type.String({ pattern: SEGMENT.source }),
    files: Type.Array(AppIndexFile, { minItems: 1, maxItems: MAX_FILES }),
  },
  { additionalProperties: false },
);
export type AppIndex = Static<typeof AppIndex>;

export class AppIndexError extends Error {
  override name = 'AppIndexError';
  readonly code = 'APP_INDEX_INVALID';
}

/** Files sorted by path, so the same release always gives the same index bytes. */
export function encodeAppIndex(index: AppIndex): string {
  const files = [...index.files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return `${JSON.stringify(checkedIndex({ ...index, files }), null, 1)}\n`;
}

/** Parses and checks an index: the schema, each path, no path twice, no file inside another. */
export function parseAppIndex(text: string | Uint8Array): AppIndex {
  let json: unknown;
  try {
    json = JSON.parse(typeof text === 'string' ? text : new TextDecoder().decode(text));
  } catch {
    throw new AppIndexError('app index: not JSON');
  }
  return checkedIndex(json);
}

function checkedIndex(json: unknown): AppIndex {
  // Checked by hand rather than by a schema compiler: the device bundle stays small.
  const fail = (why: string): never => {
    throw new AppIndexError(`app index: ${why}`);
  };
  if (!isRecord(json)) return fail('not a JSON object');
  onlyKeys(json, ['format', 'board', 'version', 'files'], '', fail);
  if (json.format !== APP_INDEX_FORMAT) fail(`format must be '${APP_INDEX_FORMAT}'`);
  for (const key of ['board', 'version'] as const) {
    const value = json[key];
    if (typeof value !== 'string' || !SEGMENT.test(value)) fail(`${key} is not a plain name`);
  }
  const files = json.files;
  if (!Array.isArray(files) || files.length === 0 || files.length > MAX_FILES) {
    return fail(`files must list 1 to ${MAX_FILES} files`);
  }
  for (const [at, file] of (files as unknown[]).entries()) {
    if (!isRecord(file)) return fail(`files[${at}] is not an object`);
    onlyKeys(file, ['path', 'length', 'sha256'], `files[${at}].`, fail);
    if (typeof file.path !== 'string') fail(`files[${at}].path is not a string`);
    if (!Number.isSafeInteger(file.length) || (file.length as number) < 0) {
      fail(`files[${at}].length is not a byte count`);
    }
    if (typeof file.sha256 !== 'string' || !SHA256_HEX.test(file.sha256)) {
      fail(`files[${at}].sha256 is not 64 lowercase hex digits`);
    }
  }
  const index = json as unknown as AppIndex;
  const paths = new Set<string>();
  for (const file of index.files) {
    try {
      checkAppFilePath(file.path);
    } catch (error) {
      throw new AppIndexError(`app index: ${(error as Error).message}`);
    }
    if (paths.has(file.path)) throw new AppIndexError(`app index: ${file.path} listed twice`);
    paths.add(file.path);
  }
  // A file at a/b and another at a/b/c cannot both exist in one folder tree.
  for (const path of paths) {
    const segments = path.split('/');
    for (let depth = 1; depth < segments.length; depth++) {
      const folder = segments.slice(0, depth).join('/');
      if (paths.has(folder)) throw new AppIndexError(`app index: ${folder} is a file and a folder`);
    }
  }
  return index;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function onlyKeys(
  object: Record<string, unknown>,
  keys: string[],
  where: string,
  fail: (why: string) => never,
): void {
  const extra = Object.keys(object).find((key) => !keys.includes(key));
  if (extra !== undefined) fail(`${where}${extra} is not a known field`);
  const missing = keys.find((key) => !(key in object));
  if (missing !== undefined) fail(`${where}${missing} is missing`);
}

function checkSegment(what: string, value: string): string {
  if (!SEGMENT.test(value) || value.includes('..')) {
    throw new TargetNameError(
      `${what} '${value}': use letters, digits and . _ + - (at most 64, no '..', not starting with a sign)`,
    );
  }
  return value;
}
