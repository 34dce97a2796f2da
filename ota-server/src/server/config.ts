import { fileURLToPath } from 'node:url';
import type { TokenSet } from './token-set.js';

/** What `serve` runs with; the CLI fills it from flags and environment variables. */
export interface ServerConfig {
  /** The TUF repository: /tuf/metadata and /tuf/targets are its folders. */
  repoDir: string;
  host: string;
  port: number;
  fleetTokens: TokenSet;
  operatorTokens: TokenSet;
  /** How often devices are told to check in. */
  checkInSeconds: number;
  retention: { checkInsPerDevice: number; uplinksPerDevice: number };
  /** Check-ins shown by GET /api/v1/devices/:id. */
  historyLimit: number;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** One log line per request. */
  logRequests: boolean;
  /** Receiving a whole request (not sending: a download may take long). */
  requestTimeoutMs: number;
  /** A socket with no traffic in either direction for this long is closed. */
  idleTimeoutMs: number;
  keepAliveTimeoutMs: number;
  bodyLimitBytes: number;
  /** Connections the kernel queues before accept (capped by net.core.somaxconn). */
  listenBacklog: number;
  /**
   * Behind a TLS-terminating proxy: believe its X-Forwarded-For/-Proto/-Host (the session
   * cookie is Secure when the client came over https; login limits count the client's address).
   */
  trustProxy: boolean;
  /** How often active roll-outs are sampled (progress chart) and their failure rate checked. */
  rolloutSampleSeconds: number;
  /** The built dashboard (index.html, assets/); `npm run build -w ota-server` writes it. */
  dashboardDir: string;
}

export const SERVER_DEFAULTS = {
  host: '127.0.0.1',
  port: 8443,
  checkInSeconds: 300,
  retention: { checkInsPerDevice: 200, uplinksPerDevice: 100 },
  historyLimit: 50,
  logLevel: 'info',
  logRequests: false,
  requestTimeoutMs: 30_000,
  idleTimeoutMs: 60_000,
  keepAliveTimeoutMs: 5_000,
  bodyLimitBytes: 256 * 1024,
  listenBacklog: 2048,
  trustProxy: false,
  rolloutSampleSeconds: 30,
  dashboardDir: fileURLToPath(new URL('../../dist/dashboard', import.meta.url)),
} as const satisfies Partial<ServerConfig>;
