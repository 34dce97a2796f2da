import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
} from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '@edge/formats';

export interface DeviceIdentity {
  deviceId: string;
  privateKey: KeyObject;
  /** The public key as the update server's enrolment takes it. */
  publicJwk: { kty: 'OKP'; crv: 'Ed25519'; x: string };
}

/**
 * The device's own Ed25519 key, made on first start and kept on /data (mode 0600), and its id:
 * the configured one, or one derived from the key so that it is stable and unique.
 */
export async function loadDeviceIdentity(
  dataDir: string,
  configuredId?: string,
): Promise<DeviceIdentity> {
  const keyPath = join(dataDir, 'device-key.pem');
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(await readFile(keyPath, 'utf8'));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new Error(`cannot load the device key ${keyPath}: ${(error as Error).message}`);
    }
    privateKey = generateKeyPairSync('ed25519').privateKey;
    await mkdir(dataDir, { recursive: true });
    await writeFileAtomic(keyPath, privateKey.export({ type: 'pkcs8', format: 'pem' }), 0o600);
  }
  const jwk = createPublicKey(privateKey).export({ format: 'jwk' });
  if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || !jwk.x) {
    throw new Error(`the device key ${keyPath} is not an Ed25519 key`);
  }
  const publicJwk = { kty: 'OKP' as const, crv: 'Ed25519' as const, x: jwk.x };
  const deviceId =
    configuredId || `edge-${createHash('sha256').update(jwk.x).digest('hex').slice(0, 16)}`;
  return { deviceId, privateKey, publicJwk };
}
