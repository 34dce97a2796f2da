import { canonicalize } from '@tufjs/canonical-json';
import { Metadata } from '@tufjs/models';
import type { MetadataKind } from '@tufjs/models';
import { sign } from 'node:crypto';
import { isExpiresFormat } from './expiry.js';
import { TufRepositoryError } from './errors.js';
import type { RoleKeyPair, TufKey } from './keys.js';

/** The TUF specification version our metadata claims (the one @tufjs/models 4 writes). */
export const SPEC_VERSION = '1.0.31';

export const ROLE_NAMES = ['root', 'targets', 'snapshot', 'timestamp'] as const;
export type RoleName = (typeof ROLE_NAMES)[number];

export function isRoleName(value: string): value is RoleName {
  return (ROLE_NAMES as readonly string[]).includes(value);
}

/** Field names exactly as the TUF specification spells them. */
interface SignedCommon {
  spec_version: string;
  version: number;
  expires: string;
}

export interface RoleKeys {
  keyids: string[];
  threshold: number;
}

export interface RootSigned extends SignedCommon {
  _type: 'root';
  consistent_snapshot: true;
  keys: Record<string, TufKey>;
  roles: Record<RoleName, RoleKeys>;
}

export type TargetCustom = Record<string, string | number>;

export interface TargetEntry {
  length: number;
  hashes: { sha256: string };
  custom: TargetCustom;
}

export interface TargetsSigned extends SignedCommon {
  _type: 'targets';
  targets: Record<string, TargetEntry>;
}

export interface MetaFileEntry {
  version: number;
  length: number;
  hashes: { sha256: string };
}

export interface SnapshotSigned extends SignedCommon {
  _type: 'snapshot';
  meta: { 'targets.json': MetaFileEntry };
}

export interface TimestampSigned extends SignedCommon {
  _type: 'timestamp';
  meta: { 'snapshot.json': MetaFileEntry };
}

export type AnySigned = RootSigned | TargetsSigned | SnapshotSigned | TimestampSigned;

export interface SignedEnvelope<T extends AnySigned> {
  signatures: { keyid: string; sig: string }[];
  signed: T;
}

/** Ed25519 signatures over the canonical JSON of `signed`, one per key. */
export function signMetadata<T extends AnySigned>(
  signed: T,
  keys: RoleKeyPair[],
): SignedEnvelope<T> {
  if (!isExpiresFormat(signed.expires)) {
    throw new Error(
      `refusing to sign ${signed._type}: expires '${signed.expires}' is not YYYY-MM-DDTHH:MM:SSZ`,
    );
  }
  const bytes = Buffer.from(canonicalize(signed));
  const signatures = keys.map(({ keyId, privateKey }) => ({
    keyid: keyId,
    sig: sign(null, bytes, privateKey).toString('hex'),
  }));
  return { signatures, signed };
}

/** The file as served: canonical JSON, so that its bytes (and so its hash) are reproducible. */
export function serializeMetadata(envelope: SignedEnvelope<AnySigned>): Buffer {
  return Buffer.from(canonicalize(envelope));
}

type SignedOf<K extends RoleName> = Extract<AnySigned, { _type: K }>;

/** Parses metadata bytes, checked by @tufjs/models (the model tuf-js clients verify with). */
export function parseMetadata<K extends RoleName>(
  role: K,
  bytes: Buffer,
  file: string,
): SignedEnvelope<SignedOf<K>> {
  try {
    const json = JSON.parse(bytes.toString('utf8')) as SignedEnvelope<SignedOf<K>>;
    // fromJSON's overloads take one literal kind each; any of the four is fine here.
    Metadata.fromJSON(role as MetadataKind.Root, json as never);
    return json;
  } catch (error) {
    throw new TufRepositoryError(
      'REPOSITORY_INVALID',
      `${file}: not valid ${role} metadata: ${(error as Error).message}`,
    );
  }
}
