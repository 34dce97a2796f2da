import test from 'ava';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { connect as http2Connect } from 'node:http2';
import { createServer, type Server as HttpsServer } from 'node:https';
import { join } from 'node:path';
import { connect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { CertificateError, TlsCertificates } from '../../src/runtime/tls.js';
import { testConfig } from '../helpers.js';
import { runtimeTestServer } from './runtime-helpers.js';
import { scratchDir } from '../../../test/scratch.js';

/** Self-signed P-256 pairs made by the openssl CLI, in a temporary folder. */
const dir = scratchDir('edge-tls');
function makePair(name: string): { cert: string; key: string } {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-subj',
      `/CN=${name}`,
      '-days',
      '2',
      '-keyout',
      key,
      '-out',
      cert,
    ],
    { stdio: 'ignore' },
  );
  return { cert, key };
}
const first = makePair('first');
const second = makePair('second');

/** The files a server is configured with: first's pair, copied so tests can replace them. */
function servingFiles(): { certFile: string; keyFile: string } {
  const own = mkdtempSync(join(dir, 'serving-'));
  const certFile = join(own, 'cert.pem');
  const keyFile = join(own, 'key.pem');
  copyFileSync(first.cert, certFile);
  copyFileSync(first.key, keyFile);
  return { certFile, keyFile };
}

async function startEdgeServer(http2: boolean) {
  const { certFile, keyFile } = servingFiles();
  const config = testConfig({
    EDGE_SERVER_HOST: '127.0.0.1',
    EDGE_SERVER_PORT: '0',
    EDGE_TLS_ENABLED: 'true',
    EDGE_TLS_CERT_FILE: certFile,
    EDGE_TLS_KEY_FILE: keyFile,
    EDGE_TLS_HTTP2: String(http2),
  });
  const app = await runtimeTestServer({ config });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return { app, port: address.port };
}

function handshake(port: number, options: ConnectionOptions = {}): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...options });
    socket.once('secureConnect', () => resolve(socket));
    socket.once('error', reject);
  });
}

test('TLS 1.1 is refused; 1.2 and 1.3 are served', async (t) => {
  const { app, port } = await startEdgeServer(false);
  t.teardown(() => app.close());
  await t.throwsAsync(
    handshake(port, {
      minVersion: 'TLSv1.1',
      maxVersion: 'TLSv1.1',
      ciphers: 'DEFAULT@SECLEVEL=0',
    }),
  );
  for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
    const socket = await handshake(port, { minVersion: version, maxVersion: version });
    t.is(socket.getProtocol(), version);
    socket.destroy();
  }
});

test('ALPN picks h2 when HTTP/2 is configured, http/1.1 otherwise; both answer /healthz', async (t) => {
  const h2 = await startEdgeServer(true);
  const h1 = await startEdgeServer(false);
  t.teardown(async () => {
    await h2.app.close();
    await h1.app.close();
  });
  const offer = ['h2', 'http/1.1'];
  const onH2 = await handshake(h2.port, { ALPNProtocols: offer });
  t.is(onH2.alpnProtocol, 'h2');
  onH2.destroy();
  const onH1 = await handshake(h1.port, { ALPNProtocols: offer });
  t.is(onH1.alpnProtocol, 'http/1.1');
  onH1.destroy();

  const session = http2Connect(`https://127.0.0.1:${h2.port}`, { rejectUnauthorized: false });
  const body = await new Promise<string>((resolve, reject) => {
    const stream = session.request({ ':path': '/healthz' });
    let text = '';
    stream.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
    stream.once('end', () => resolve(text));
    stream.once('error', reject);
  });
  session.close();
  t.deepEqual(JSON.parse(body), { status: 'ok' });
  // HTTP/1.1 over TLS on the HTTP/2 server too (allowHTTP1).
  const response = await fetchInsecure(h2.port, '/healthz');
  t.is(response, '{"status":"ok"}');
});

test('a second connection resumes the session with its ticket (TLS 1.3 and 1.2)', async (t) => {
  const { app, port } = await startEdgeServer(false);
  t.teardown(() => app.close());
  for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
    const options = { minVersion: version, maxVersion: version };
    const firstSocket = await handshake(port, options);
    const ticket = await new Promise<Buffer>((resolve) => {
      const session = firstSocket.getSession();
      if (version === 'TLSv1.2' && session) resolve(session);
      firstSocket.once('session', resolve);
    });
    t.false(firstSocket.isSessionReused());
    firstSocket.destroy();
    const resumed = await handshake(port, { ...options, session: ticket });
    t.true(resumed.isSessionReused(), version);
    resumed.destroy();
  }
});

test('a TLS 1.3 resumption makes a key exchange (X25519); a TLS 1.2 resumption makes none', async (t) => {
  const { app, port } = await startEdgeServer(false);
  t.teardown(() => app.close());
  const exchanges: Record<string, string[]> = {};
  for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
    const options = { minVersion: version, maxVersion: version };
    const firstSocket = await handshake(port, options);
    // 1.2's ticket comes within the handshake, 1.3's after it.
    const ticket =
      version === 'TLSv1.2'
        ? firstSocket.getSession()!
        : await new Promise<Buffer>((resolve) => firstSocket.once('session', resolve));
    const keyExchange = (socket: TLSSocket) =>
      (socket.getEphemeralKeyInfo() as { name?: string } | null)?.name ?? 'none';
    const resumed = await handshake(port, { ...options, session: ticket });
    t.true(resumed.isSessionReused(), version);
    exchanges[version] = [keyExchange(firstSocket), keyExchange(resumed)];
    firstSocket.destroy();
    resumed.destroy();
  }
  // Full handshakes use X25519, node's first choice; only 1.2's resumption skips it.
  t.deepEqual(exchanges, { 'TLSv1.3': ['X25519', 'X25519'], 'TLSv1.2': ['X25519', 'none'] });
});

/** TlsCertificates on a plain https server: the swap, and the refusal, seen by new clients. */
async function servedFingerprint(port: number): Promise<string> {
  const socket = await handshake(port);
  const fingerprint = socket.getPeerX509Certificate()!.fingerprint256;
  socket.destroy();
  return fingerprint;
}

test('a reload swaps the certificate without a restart; a bad one is refused and the old one keeps serving', async (t) => {
  const files = servingFiles();
  const certificates = new TlsCertificates({ ...files, http2: false });
  const server: HttpsServer = createServer(certificates.serverOptions(), (_req, res) =>
    res.end('ok'),
  );
  certificates.attach(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => server.close());
  const { port } = server.address() as { port: number };
  const fingerprintOf = (file: string) =>
    new X509Certificate(execFileSync('cat', [file])).fingerprint256;

  t.is(await servedFingerprint(port), fingerprintOf(first.cert));
  t.deepEqual(certificates.reloadIfChanged(), { result: 'unchanged' });

  copyFileSync(second.cert, files.certFile);
  copyFileSync(second.key, files.keyFile);
  t.is(certificates.reloadIfChanged().result, 'reloaded');
  t.is(await servedFingerprint(port), fingerprintOf(second.cert));

  // A certificate whose key is another's, then a file that is no certificate at all.
  copyFileSync(first.cert, files.certFile);
  const mismatch = t.throws(() => certificates.reloadIfChanged(), { instanceOf: CertificateError });
  t.regex(mismatch.message, /is not the key of the certificate/);
  t.deepEqual(
    certificates.reloadIfChanged(),
    { result: 'unchanged' },
    'refused once, not at every check',
  );
  writeFileSync(
    files.certFile,
    '-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n',
  );
  t.throws(() => certificates.reloadIfChanged(), {
    instanceOf: CertificateError,
    message: /is not a certificate/,
  });
  t.is(await servedFingerprint(port), fingerprintOf(second.cert));
  t.is(certificates.current.subject, 'CN=second');
});

test('a server configured with a bad certificate does not start', async (t) => {
  const files = servingFiles();
  writeFileSync(files.keyFile, 'no key here\n');
  await t.throwsAsync(
    runtimeTestServer({
      config: testConfig({
        EDGE_TLS_ENABLED: 'true',
        EDGE_TLS_CERT_FILE: files.certFile,
        EDGE_TLS_KEY_FILE: files.keyFile,
      }),
    }),
    { instanceOf: CertificateError, message: /is not a private key/ },
  );
});

function fetchInsecure(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({
      host: '127.0.0.1',
      port,
      rejectUnauthorized: false,
      ALPNProtocols: ['http/1.1'],
    });
    let text = '';
    socket.once('secureConnect', () =>
      socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`),
    );
    socket.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
    socket.once('end', () => resolve(text.slice(text.indexOf('\r\n\r\n') + 4)));
    socket.once('error', reject);
  });
}
