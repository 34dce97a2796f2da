import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { writeFileAtomic } from '@edge/formats';
import { expiresAfter } from './expiry.js';
import type { ExpiryPolicy } from './expiry.js';
import type { RoleKeyPair } from './keys.js';
import type { RepositoryLayout } from './layout.js';
import { metadataFileName } from './layout.js';
import { serializeMetadata, signMetadata, SPEC_VERSION } from './metadata.js';
import type { MetaFileEntry, RootSigned, TargetEntry, TargetsSigned } from './metadata.js';
import type { RepositoryState } from './repository-state.js';
import { newestVersion } from './repository-state.js';

export interface PublishPlan {
  /** New targets content to sign as a new targets version (and so a new snapshot). */
  targets?: Record<string, TargetEntry>;
  /** Re-sign snapshot even when targets did not change (near expiry, key rotated). */
  resignSnapshot?: boolean;
}

export interface PublishKeys {
  targets?: RoleKeyPair;
  snapshot?: RoleKeyPair;
  timestamp: RoleKeyPair;
}

export interface PublishContext {
  layout: RepositoryLayout;
  now: Date;
  policy: ExpiryPolicy;
  beforeWrite?: ((file: string) => void) | undefined;
}

export interface PublishedVersions {
  targets: number;
  snapshot: number;
  timestamp: number;
}

/**
 * Writes new metadata in the order that keeps the repository valid at every instant:
 * version-named files first (no client looks at them yet), timestamp.json last, the one
 * rename that publishes the lot. A version number is never reused, so a file once written
 * never changes.
 */
export async function publishMetadata(
  state: RepositoryState,
  plan: PublishPlan,
  keys: PublishKeys,
  context: PublishContext,
): Promise<PublishedVersions> {
  const { layout, now, policy } = context;
  let targetsMeta = state.snapshot.envelope.signed.meta['targets.json'];
  if (plan.targets) {
    if (!keys.targets) throw new Error('publishing targets needs the targets key');
    const signed: TargetsSigned = {
      _type: 'targets',
      spec_version: SPEC_VERSION,
      version: await nextVersion(layout, 'targets', state.targets.envelope.signed.version),
      expires: expiresAfter(now, policy.targets),
      targets: plan.targets,
    };
    const bytes = serializeMetadata(signMetadata(signed, [keys.targets]));
    await writeMetadataFile(context, metadataFileName('targets', signed.version), bytes);
    targetsMeta = metaFileEntry(signed.version, bytes);
  }
  let snapshotMeta = state.timestamp.envelope.signed.meta['snapshot.json'];
  if (plan.targets || plan.resignSnapshot) {
    if (!keys.snapshot) throw new Error('publishing snapshot needs the snapshot key');
    const version = await nextVersion(layout, 'snapshot', state.snapshot.envelope.signed.version);
    const bytes = serializeMetadata(
      signMetadata(
        {
          _type: 'snapshot',
          spec_version: SPEC_VERSION,
          version,
          expires: expiresAfter(now, policy.snapshot),
          meta: { 'targets.json': targetsMeta },
        },
        [keys.snapshot],
      ),
    );
    await writeMetadataFile(context, metadataFileName('snapshot', version), bytes);
    snapshotMeta = metaFileEntry(version, bytes);
  }
  const timestampVersion = state.timestamp.envelope.signed.version + 1;
  const bytes = serializeMetadata(
    signMetadata(
      {
        _type: 'timestamp',
        spec_version: SPEC_VERSION,
        version: timestampVersion,
        expires: expiresAfter(now, policy.timestamp),
        meta: { 'snapshot.json': snapshotMeta },
      },
      [keys.timestamp],
    ),
  );
  await writeMetadataFile(context, 'timestamp.json', bytes);
  return {
    targets: targetsMeta.version,
    snapshot: snapshotMeta.version,
    timestamp: timestampVersion,
  };
}

/** A new root version, then the plain root.json copy that devices and operators start from. */
export async function publishRoot(
  signed: RootSigned,
  keys: RoleKeyPair[],
  context: PublishContext,
): Promise<void> {
  const bytes = serializeMetadata(signMetadata(signed, keys));
  await writeMetadataFile(context, metadataFileName('root', signed.version), bytes);
  await writeMetadataFile(context, 'root.json', bytes);
}

export function metaFileEntry(version: number, bytes: Buffer): MetaFileEntry {
  return {
    version,
    length: bytes.length,
    hashes: { sha256: createHash('sha256').update(bytes).digest('hex') },
  };
}

/** Past both the current version and any file a crashed run left behind. */
async function nextVersion(
  layout: RepositoryLayout,
  role: 'targets' | 'snapshot',
  current: number,
): Promise<number> {
  return Math.max(current, await newestVersion(layout, role)) + 1;
}

async function writeMetadataFile(
  context: PublishContext,
  name: string,
  bytes: Buffer,
): Promise<void> {
  context.beforeWrite?.(name);
  await writeFileAtomic(join(context.layout.metadataDir, name), bytes);
}
