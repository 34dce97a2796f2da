import { Metadata, MetadataKind, MetaFile } from '@tufjs/models';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TufRepositoryError } from './errors.js';
import type { RepositoryLayout } from './layout.js';
import { metadataFileName, repositoryLayout } from './layout.js';
import { parseMetadata } from './metadata.js';
import type {
  AnySigned,
  RoleName,
  RootSigned,
  SignedEnvelope,
  SnapshotSigned,
  TargetsSigned,
  TimestampSigned,
} from './metadata.js';

export interface LoadedMetadata<T extends AnySigned> {
  file: string;
  bytes: Buffer;
  envelope: SignedEnvelope<T>;
}

/** The metadata a client sees now: the newest root, timestamp.json and what it points to. */
export interface RepositoryState {
  layout: RepositoryLayout;
  root: LoadedMetadata<RootSigned>;
  targets: LoadedMetadata<TargetsSigned>;
  snapshot: LoadedMetadata<SnapshotSigned>;
  timestamp: LoadedMetadata<TimestampSigned>;
}

export async function loadRepositoryState(dir: string): Promise<RepositoryState> {
  const layout = repositoryLayout(dir);
  const rootVersion = await newestVersion(layout, 'root');
  if (rootVersion === 0) {
    throw new TufRepositoryError(
      'REPOSITORY_MISSING',
      `${layout.metadataDir}: no N.root.json: not an initialised repository`,
    );
  }
  const root = await loadRole(layout, 'root', rootVersion);
  const timestamp = await loadRole(layout, 'timestamp', 0);
  const snapshot = await loadRole(
    layout,
    'snapshot',
    timestamp.envelope.signed.meta['snapshot.json'].version,
  );
  const targets = await loadRole(
    layout,
    'targets',
    snapshot.envelope.signed.meta['targets.json'].version,
  );
  return { layout, root, targets, snapshot, timestamp };
}

type SignedOf<K extends RoleName> = Extract<AnySigned, { _type: K }>;

export async function loadRole<K extends RoleName>(
  layout: RepositoryLayout,
  role: K,
  version: number,
): Promise<LoadedMetadata<SignedOf<K>>> {
  const file = join(layout.metadataDir, metadataFileName(role, version));
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new TufRepositoryError('REPOSITORY_INVALID', `${file}: missing`);
    }
    throw error;
  }
  const json = parseMetadata(role, bytes, file);
  if (role !== 'timestamp' && json.signed.version !== version) {
    throw new TufRepositoryError(
      'REPOSITORY_INVALID',
      `${file}: says version ${json.signed.version}`,
    );
  }
  return { file, bytes, envelope: json };
}

/** The highest N of the `N.<role>.json` files present (0 when none). */
export async function newestVersion(layout: RepositoryLayout, role: RoleName): Promise<number> {
  let names: string[];
  try {
    names = await readdir(layout.metadataDir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw error;
  }
  const pattern = new RegExp(`^([1-9][0-9]*)\\.${role}\\.json$`);
  let newest = 0;
  for (const name of names) {
    const match = pattern.exec(name);
    if (match?.[1]) newest = Math.max(newest, Number(match[1]));
  }
  return newest;
}

/**
 * What a conformant client would object to, checked with @tufjs/models: each role signed
 * to its threshold by the keys the newest root lists, every root by its predecessor's root
 * keys and its own, the versions and hashes that timestamp and snapshot record.
 */
export async function verifyRepository(state: RepositoryState): Promise<string[]> {
  const problems: string[] = [];
  const check = (label: string, verify: () => void): void => {
    try {
      verify();
    } catch (error) {
      problems.push(`${label}: ${(error as Error).message}`);
    }
  };
  const newestRoot = state.root.envelope.signed.version;
  let trusted = Metadata.fromJSON(
    MetadataKind.Root,
    jsonOf(await loadRole(state.layout, 'root', 1)),
  );
  check('1.root.json', () => trusted.verifyDelegate('root', trusted));
  for (let version = 2; version <= newestRoot; version++) {
    const loaded =
      version === newestRoot ? state.root : await loadRole(state.layout, 'root', version);
    const next = Metadata.fromJSON(MetadataKind.Root, jsonOf(loaded));
    check(`${version}.root.json`, () => {
      trusted.verifyDelegate('root', next);
      next.verifyDelegate('root', next);
    });
    trusted = next;
  }
  const signedRoles = [
    ['timestamp', Metadata.fromJSON(MetadataKind.Timestamp, jsonOf(state.timestamp))],
    ['snapshot', Metadata.fromJSON(MetadataKind.Snapshot, jsonOf(state.snapshot))],
    ['targets', Metadata.fromJSON(MetadataKind.Targets, jsonOf(state.targets))],
  ] as const;
  for (const [role, model] of signedRoles) {
    check(state[role].file, () => trusted.verifyDelegate(role, model));
  }
  check(state.snapshot.file, () =>
    MetaFile.fromJSON(asJson(state.timestamp.envelope.signed.meta['snapshot.json'])).verify(
      state.snapshot.bytes,
    ),
  );
  check(state.targets.file, () =>
    MetaFile.fromJSON(asJson(state.snapshot.envelope.signed.meta['targets.json'])).verify(
      state.targets.bytes,
    ),
  );
  return problems;
}

/** The plain-JSON type @tufjs/models parses (not exported from its index). */
type JsonObject = Parameters<typeof MetaFile.fromJSON>[0];

function jsonOf(loaded: LoadedMetadata<AnySigned>): JsonObject {
  return asJson(loaded.envelope);
}

function asJson(value: object): JsonObject {
  return value as unknown as JsonObject;
}
