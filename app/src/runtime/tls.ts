import { X509Certificate, createPrivateKey, randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import type { SecureContextOptions, Server as TlsServer } from 'node:tls';
import { createSecureContext } from 'node:tls';

export interface TlsSettings {
  certFile: string;
  keyFile: string;
  /** Offer h2 by ALPN (HTTP/1.1 stays available); else HTTP/1.1 only. */
  http2: boolean;
}

/** A certificate and key that passed the checks, with what the log says about them. */
export interface CertificatePair {
  cert: Buffer;
  key: Buffer;
  subject: string;
  validTo: string;
  fingerprint256: string;
  /** Changes when either file is replaced or rewritten. */
  stamp: string;
}

export class CertificateError extends Error {
  override name = 'CertificateError';
}

/**
 * TLS 1.2 and 1.3 only: 1.0 and 1.1 are refused at the handshake. Both resume from tickets: a
 * 1.3 resumption still makes an ECDHE exchange (OpenSSL 3.0 picks psk_dhe_ke whenever a client
 * offers it), a 1.2 one makes none, and so lacks forward secrecy while its ticket key lives.
 * A client that must save CPU may cap itself at 1.2; the server offers 1.3 to all who can.
 */
export const MIN_TLS_VERSION = 'TLSv1.2';
/** Session ticket keys: 16 B name, 16 B HMAC secret, 16 B AES key. */
const TICKET_KEYS_BYTES = 48;

/**
 * The server's certificate, its session ticket keys and its ALPN offer: the options node's
 * TLS server starts with, and the reloads that swap certificate or ticket keys in place.
 */
export class TlsCertificates {
  readonly settings: TlsSettings;
  #current: CertificatePair;
  #ticketKeys = randomBytes(TICKET_KEYS_BYTES);
  #server: TlsServer | undefined;
  #refusedStamp: string | undefined;

  /** Loads the pair at start; a bad pair throws: there is nothing to fall back on yet. */
  constructor(settings: TlsSettings) {
    this.settings = settings;
    this.#current = loadCertificatePair(settings.certFile, settings.keyFile);
  }

  get current(): CertificatePair {
    return this.#current;
  }

  get alpnProtocols(): string[] {
    return this.settings.http2 ? ['h2', 'http/1.1'] : ['http/1.1'];
  }

  /** The options for https.createServer / http2.createSecureServer. */
  serverOptions(): SecureContextOptions & { ALPNProtocols: string[]; ticketKeys: Buffer } {
    return {
      cert: this.#current.cert,
      key: this.#current.key,
      minVersion: MIN_TLS_VERSION,
      ticketKeys: this.#ticketKeys,
      ALPNProtocols: this.alpnProtocols,
    };
  }

  /** The running server whose context reloads replace. */
  attach(server: TlsServer): void {
    this.#server = server;
  }

  /**
   * Loads the files again if they changed since the pair in use was loaded. A pair that fails
   * the checks is refused and the one in use keeps serving; the caller logs the reason.
   */
  reloadIfChanged(): { result: 'unchanged' } | { result: 'reloaded'; pair: CertificatePair } {
    let stamp: string;
    try {
      stamp = fileStamp(this.settings.certFile, this.settings.keyFile);
    } catch (error) {
      stamp = `unreadable: ${(error as NodeJS.ErrnoException).code ?? String(error)}`;
    }
    // A refused pair is reported once, not at every check, until the files change again.
    if (stamp === this.#current.stamp || stamp === this.#refusedStamp)
      return { result: 'unchanged' };
    try {
      return this.reload();
    } catch (error) {
      this.#refusedStamp = stamp;
      throw error;
    }
  }

  /** Loads and checks the files, then swaps the server's context; throws CertificateError if refused. */
  reload(): { result: 'reloaded'; pair: CertificatePair } {
    const pair = loadCertificatePair(this.settings.certFile, this.settings.keyFile);
    this.#current = pair;
    this.#server?.setSecureContext(this.serverOptions());
    return { result: 'reloaded', pair };
  }

  /** New session ticket keys: tickets issued before no longer resume (forward secrecy's price). */
  rotateTicketKeys(): void {
    this.#ticketKeys = randomBytes(TICKET_KEYS_BYTES);
    this.#server?.setTicketKeys(this.#ticketKeys);
  }
}

/**
 * Reads a certificate chain and key and checks them as a handshake would need them: both
 * parse, the key is the certificate's, the certificate has not expired, and node can build
 * a context from them. Not-yet-valid is not checked: a Pi has no RTC and may boot in the past.
 */
export function loadCertificatePair(certFile: string, keyFile: string): CertificatePair {
  let stamp: string;
  let cert: Buffer;
  let key: Buffer;
  try {
    stamp = fileStamp(certFile, keyFile);
    cert = readFileSync(certFile);
    key = readFileSync(keyFile);
  } catch (error) {
    throw new CertificateError(`cannot read the certificate or key: ${(error as Error).message}`);
  }
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch (error) {
    throw new CertificateError(`${certFile} is not a certificate: ${(error as Error).message}`);
  }
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch (error) {
    throw new CertificateError(`${keyFile} is not a private key: ${(error as Error).message}`);
  }
  if (!x509.checkPrivateKey(privateKey)) {
    throw new CertificateError(`${keyFile} is not the key of the certificate in ${certFile}`);
  }
  if (Date.parse(x509.validTo) < Date.now()) {
    throw new CertificateError(`the certificate in ${certFile} expired on ${x509.validTo}`);
  }
  try {
    createSecureContext({ cert, key, minVersion: MIN_TLS_VERSION });
  } catch (error) {
    throw new CertificateError(`node refuses the pair: ${(error as Error).message}`);
  }
  return {
    cert,
    key,
    subject: x509.subject.replace(/\n/g, ', '),
    validTo: x509.validTo,
    fingerprint256: x509.fingerprint256,
    stamp,
  };
}

/** Inode, size and modification time of both files: a new file or a rewrite both change it. */
function fileStamp(certFile: string, keyFile: string): string {
  return [certFile, keyFile]
    .map((file) => {
      const stats = statSync(file);
      return `${stats.ino}:${stats.size}:${stats.mtimeMs}`;
    })
    .join('/');
}

/**
 * Fastify's transport options: plain HTTP/1.1 without TLS; HTTPS; or HTTP/2 with HTTP/1.1
 * beside it (ALPN picks). Typed as plain HTTP's so that the server keeps one FastifyInstance
 * type: the routes use nothing that differs between node's http, https and http2-compat objects.
 */
export function transportOptions(tls: TlsCertificates | undefined): { http2?: false } {
  if (!tls) return { http2: false };
  const https = tls.serverOptions();
  const options = tls.settings.http2
    ? { http2: true, https: { ...https, allowHTTP1: true } }
    : { https };
  return options as { http2?: false };
}
