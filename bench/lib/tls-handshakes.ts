import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, type ConnectionOptions, type TLSSocket } from 'node:tls';

/**
 * Server CPU per TLS handshake, full against resumed, measured from outside the server: the
 * clients run here and `readServerCpuMs` reads the server's CPU time, in this machine's /proc
 * or in a device's.
 */

/** What a client asks for: the server (default TLS settings) serves all three. */
export const TLS_VARIANTS: { name: string; client: ConnectionOptions }[] = [
  { name: 'TLS 1.3, X25519', client: {} },
  { name: 'TLS 1.3, P-256 key share', client: { ecdhCurve: 'P-256' } },
  { name: 'TLS 1.2, session ticket', client: { maxVersion: 'TLSv1.2' } },
];
export type TlsVariant = (typeof TLS_VARIANTS)[number];

/** The server certificates measured: a P-256 key signs cheaply, an RSA-2048 one does not. */
export const CERTIFICATE_KEYS = {
  'P-256': ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'],
  'RSA-2048': ['-newkey', 'rsa:2048'],
} as const;
export type CertificateKey = keyof typeof CERTIFICATE_KEYS;

/** Full and resumed batches alternate, so that a change in the machine's load hits both alike. */
const ROUNDS = 4;

/** A TLS server measured: where it listens, how its CPU time is read, how long a close takes. */
export interface HandshakeTarget {
  port: number;
  /** The server's CPU time so far, in ms (every thread). */
  readServerCpuMs: () => number | Promise<number>;
  /** A wait after each batch for the server's side of its last close. */
  settleMs: number;
}

export interface HandshakeCosts {
  variant: string;
  fullCpuMs: number;
  resumedCpuMs: number;
  fullWallMs: number;
  resumedWallMs: number;
  /** The key exchange of the resumed handshakes ('none': the ticket's keys alone). */
  resumedKeyExchange: string;
}

interface Cost {
  cpuMs: number;
  wallMs: number;
}

/** A self-signed certificate and its key, made with openssl; returns their paths. */
export function selfSignedCertificate(
  dir: string,
  key: CertificateKey,
): { certFile: string; keyFile: string } {
  const certFile = join(dir, `${key}.crt`);
  const keyFile = join(dir, `${key}.key`);
  const subject = ['-nodes', '-subj', '/CN=bench', '-days', '1'];
  execFileSync(
    'openssl',
    ['req', '-x509', ...CERTIFICATE_KEYS[key], ...subject, '-keyout', keyFile, '-out', certFile],
    { stdio: 'ignore' },
  );
  return { certFile, keyFile };
}

/** One variant's full and resumed handshakes, `count` of each, in alternating batches. */
export async function fullAndResumed(
  target: HandshakeTarget,
  variant: TlsVariant,
  count: number,
): Promise<HandshakeCosts> {
  const { port } = target;
  const first = await handshake(port, undefined, variant.client);
  const session = await first.session;
  first.socket.destroy();
  let reused = 0;
  let resumedKeyExchange = '';
  const full = async () => {
    (await handshake(port, undefined, variant.client)).socket.destroy();
  };
  const resumed = async () => {
    const { socket } = await handshake(port, session, variant.client);
    if (socket.isSessionReused()) reused++;
    // An empty object when the handshake made no ephemeral key.
    const exchange = socket.getEphemeralKeyInfo() as { name?: string } | null;
    resumedKeyExchange = exchange?.name ?? 'none';
    socket.destroy();
  };
  for (let i = 0; i < 20; i++) await Promise.all([full(), resumed()]);
  reused = 0;
  const [fullCost, resumedCost] = (await batches(target, count, full, resumed)) as [Cost, Cost];
  if (reused < count) throw new Error(`${variant.name}: ${reused}/${count} resumed`);
  return {
    variant: variant.name,
    fullCpuMs: fullCost.cpuMs,
    resumedCpuMs: resumedCost.cpuMs,
    fullWallMs: fullCost.wallMs,
    resumedWallMs: resumedCost.wallMs,
    resumedKeyExchange,
  };
}

/**
 * `count` connections made one at a time by each `connectOnce`, in ROUNDS alternating
 * batches: server CPU ms and client wall ms per connection, for each.
 */
async function batches(
  { readServerCpuMs, settleMs }: HandshakeTarget,
  count: number,
  ...connectOnce: (() => Promise<void>)[]
): Promise<Cost[]> {
  const totals = connectOnce.map(() => ({ cpuMs: 0, wallMs: 0 }));
  for (let round = 0; round < ROUNDS; round++) {
    for (const [index, connectNow] of connectOnce.entries()) {
      const before = await readServerCpuMs();
      const started = performance.now();
      for (let i = 0; i < count / ROUNDS; i++) await connectNow();
      totals[index]!.wallMs += performance.now() - started;
      await sleep(settleMs);
      totals[index]!.cpuMs += (await readServerCpuMs()) - before;
    }
  }
  return totals.map(({ cpuMs, wallMs }) => ({ cpuMs: cpuMs / count, wallMs: wallMs / count }));
}

/** A TLS connection to 127.0.0.1:port, resolved once its handshake is done. */
export function handshake(
  port: number,
  session: Buffer | undefined,
  options: ConnectionOptions = {},
): Promise<{ socket: TLSSocket; session: Promise<Buffer> }> {
  return new Promise((resolve, reject) => {
    const socket = connect({
      host: '127.0.0.1',
      port,
      rejectUnauthorized: false,
      session,
      ALPNProtocols: ['http/1.1'],
      ...options,
    });
    const ticket = new Promise<Buffer>((got) => socket.once('session', got));
    socket.once('secureConnect', () => resolve({ socket, session: ticket }));
    socket.once('error', reject);
  });
}
