import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';

/**
 * scrypt, memory-hard: N = 2^15, r = 8, p = 1 takes 128·N·r = 32 MiB and tens of
 * milliseconds per guess. Stored as `scrypt$N$r$p$salt$hash` (base64url), so the cost can
 * rise later without breaking the hashes already stored.
 */
export const SCRYPT_COST = { N: 2 ** 15, r: 8, p: 1 } as const;
const SALT_BYTES = 16;
const HASH_BYTES = 32;
/** A stored hash may not ask for more than this: it must not make a login a denial of service. */
const MAX_N = 2 ** 20;

type ScryptCost = { N: number; r: number; p: number };

function derive(password: string, salt: Buffer, cost: ScryptCost, length: number) {
  // Twice what the cost needs: Node's default limit is exactly 32 MiB, too tight for N = 2^15.
  const maxmem = 2 * 128 * cost.N * cost.r * cost.p;
  return new Promise<Buffer>((resolve, reject) =>
    scrypt(password.normalize('NFC'), salt, length, { ...cost, maxmem }, (error, key) =>
      error ? reject(error) : resolve(key),
    ),
  );
}

export async function hashPassword(
  password: string,
  cost: ScryptCost = SCRYPT_COST,
): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const hash = await derive(password, salt, cost, HASH_BYTES);
  return [
    'scrypt',
    cost.N,
    cost.r,
    cost.p,
    salt.toString('base64url'),
    hash.toString('base64url'),
  ].join('$');
}

interface ParsedHash {
  cost: ScryptCost;
  salt: Buffer;
  hash: Buffer;
}

function parse(encoded: string): ParsedHash | undefined {
  const parts = encoded.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return undefined;
  const [N, r, p] = parts.slice(1, 4).map(Number) as [number, number, number];
  if (![N, r, p].every(Number.isSafeInteger) || N < 2 || N > MAX_N || (N & (N - 1)) !== 0) {
    return undefined;
  }
  if (r < 1 || r > 32 || p < 1 || p > 16) return undefined;
  const salt = Buffer.from(parts[4]!, 'base64url');
  const hash = Buffer.from(parts[5]!, 'base64url');
  if (salt.length < 8 || hash.length < 16) return undefined;
  return { cost: { N, r, p }, salt, hash };
}

/** Whether the password matches the stored hash; a hash we cannot read matches nothing. */
export async function verifyPassword(password: string, encoded: string): Promise<boolean> {
  const parsed = parse(encoded);
  if (!parsed) return false;
  const derived = await derive(password, parsed.salt, parsed.cost, parsed.hash.length);
  return timingSafeEqual(derived, parsed.hash);
}

let dummyHash: Promise<string> | undefined;

/**
 * A hash of a random password, made once: an unknown username is checked against it so that
 * the answer takes as long as for a known one (no telling which usernames exist).
 */
export function dummyPasswordHash(): Promise<string> {
  dummyHash ??= hashPassword(randomBytes(32).toString('base64url'));
  return dummyHash;
}

/** Why a new password is refused, or undefined. */
export function weakPasswordReason(password: string): string | undefined {
  if ([...password].length < 12) return 'the password needs at least 12 characters';
  if (/^(.)\1*$/su.test(password)) return 'the password is one character repeated';
  return undefined;
}
