import type { ExecutionContext } from 'ava';
import type { FastifyInstance } from 'fastify';
import { rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { openFleetStore } from '../../src/fleet/open-store.js';
import type { FleetStore } from '../../src/fleet/store.js';
import { buildServer } from '../../src/server/build-server.js';
import { SERVER_DEFAULTS, type ServerConfig } from '../../src/server/config.js';
import { TokenSet } from '../../src/server/token-set.js';
import { tempDir } from './fixtures.js';

export const FLEET_TOKEN = 'fleet-token-for-tests-0123456789';
export const OPERATOR_TOKEN = 'operator-token-for-tests-0123456789';

export interface TestServer {
  url: string;
  app: FastifyInstance;
  store: FleetStore;
  /** Closes server and store (for a server shared by a file's tests). */
  close: () => Promise<void>;
  operator: (
    method: string,
    path: string,
    body?: unknown,
  ) => Promise<{ status: number; body: Record<string, unknown> }>;
}

/** The server `serve` runs, on 127.0.0.1 port 0, with a fresh SQLite store unless given one. */
export async function startServer(
  t: ExecutionContext,
  repoDir: string,
  options: {
    store?: FleetStore;
    clock?: () => Date;
    config?: Partial<ServerConfig>;
    /** Not closed with the test that started it: the caller closes it. */
    keepOpen?: boolean;
  } = {},
): Promise<TestServer> {
  const dataDir = await tempDir(options.keepOpen ? null : t, 'data');
  const store = options.store ?? (await openFleetStore({ dataDir }));
  const config: ServerConfig = {
    ...SERVER_DEFAULTS,
    repoDir,
    port: 0,
    fleetTokens: TokenSet.fromTokens([FLEET_TOKEN]),
    operatorTokens: TokenSet.fromTokens([OPERATOR_TOKEN]),
    logLevel: 'silent',
    ...options.config,
  };
  const app = await buildServer({ config, store, clock: options.clock });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const close = async () => {
    await app.close();
    if (!options.store) await store.close();
    if (options.keepOpen) await rm(dataDir, { recursive: true, force: true });
  };
  if (!options.keepOpen) t.teardown(close);
  const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  const operator: TestServer['operator'] = async (method, path, body) => {
    const response = await fetch(`${url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${OPERATOR_TOKEN}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };
  return { url, app, store, close, operator };
}
