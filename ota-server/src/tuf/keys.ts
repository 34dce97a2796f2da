import { canonicalize } from '@tufjs/canonical-json';
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { constants } from 'node:fs';
import { open, readFile, stat } from 'node:fs/promises';
import { TufRepositoryError } from './errors.js';

/** A public key as TUF metadata lists it. */
export interface TufKey {
  keytype: 'ed25519';
  scheme: 'ed25519';
  keyval: { public: string };
}

export interface RoleKeyPair {
  keyId: string;
  key: TufKey;
  privateKey: KeyObject;
}

export function generateEd25519KeyPair(): RoleKeyPair {
  const { privateKey } = generateKeyPairSync('ed25519');
  return keyPairOf(privateKey);
}

/** The TUF key object: keyval.public is the raw 32-byte Ed25519 key in hex. */
export function tufKeyOf(publicKey: KeyObject): TufKey {
  const jwk = publicKey.export({ format: 'jwk' });
  if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || typeof jwk.x !== 'string') {
    throw new Error(`not an Ed25519 key (${jwk.kty ?? '?'} ${jwk.crv ?? ''})`);
  }
  const raw = Buffer.from(jwk.x, 'base64url');
  return { keytype: 'ed25519', scheme: 'ed25519', keyval: { public: raw.toString('hex') } };
}

/** Key ID = SHA-256 (hex) of the key object's canonical JSON, as the specification defines. */
export function keyIdOf(key: TufKey): string {
  return createHash('sha256').update(canonicalize(key)).digest('hex');
}

export function keyPairOf(privateKey: KeyObject): RoleKeyPair {
  const key = tufKeyOf(createPublicKey(privateKey));
  return { keyId: keyIdOf(key), key, privateKey };
}

/** The node:crypto public key behind a TUF key object (for verifying signatures ourselves). */
export function publicKeyOf(key: TufKey): KeyObject {
  const x = Buffer.from(key.keyval.public, 'hex').toString('base64url');
  return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x }, format: 'jwk' });
}

/** Writes a private key as PKCS8 PEM, mode 0600; never overwrites an existing file. */
export async function savePrivateKey(path: string, keyPair: RoleKeyPair): Promise<void> {
  const pem = keyPair.privateKey.export({ format: 'pem', type: 'pkcs8' });
  const handle = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  try {
    await handle.writeFile(pem);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Reads a PKCS8 PEM Ed25519 private key, refusing one that group or others can read. */
export async function loadPrivateKey(path: string): Promise<RoleKeyPair> {
  let mode: number;
  try {
    mode = (await stat(path)).mode;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new TufRepositoryError('KEY_MISSING', `private key file not found: ${path}`);
    }
    throw error;
  }
  if ((mode & 0o077) !== 0) {
    const octal = (mode & 0o777).toString(8).padStart(4, '0');
    throw new TufRepositoryError(
      'KEY_UNSAFE_MODE',
      `refusing private key ${path}: group or others may access it (mode ${octal}); run chmod 600 ${path}`,
    );
  }
  try {
    const privateKey = createPrivateKey(await readFile(path));
    if (privateKey.asymmetricKeyType !== 'ed25519') {
      throw new Error(`a ${privateKey.asymmetricKeyType ?? 'unknown'} key, not Ed25519`);
    }
    return keyPairOf(privateKey);
  } catch (error) {
    throw new TufRepositoryError(
      'KEY_INVALID',
      `${path}: not an Ed25519 private key in PEM: ${(error as Error).message}`,
    );
  }
}
