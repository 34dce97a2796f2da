import { access } from 'node:fs/promises';
import { resolve } from 'node:path';
import { openFleetStore, redact } from '../fleet/open-store.js';
import { buildServer } from '../server/build-server.js';
import { SERVER_DEFAULTS, type ServerConfig } from '../server/config.js';
import { TokenSet } from '../server/token-set.js';
import { repositoryLayout } from '../tuf/index.js';
import { integerOption, option, parseCommandArgs, requiredOption } from './args.js';
import { UsageError, type CliIo } from './io.js';

export const SERVE_USAGE =
  'serve --repo DIR [--host 127.0.0.1] [--port 8443] [--data DIR] [--database URL]\n' +
  '        [--fleet-token-file F] [--operator-token-file F] [--check-in-seconds N] [--log-level L]\n' +
  '        [--trust-proxy] [--rollout-sample-seconds 30]';

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** The server's settings: flags first, then OTA_* environment variables, then defaults. */
export async function serveConfig(
  values: Record<string, string | boolean | undefined>,
  env: NodeJS.ProcessEnv,
): Promise<{ config: ServerConfig; dataDir: string; databaseUrl?: string }> {
  const repoDir = resolve(requiredOption(values, 'repo', env, 'OTA_REPO'));
  const logLevel = option(values, 'log-level', env, 'OTA_LOG_LEVEL', SERVER_DEFAULTS.logLevel)!;
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}`);
  }
  const tokens = async (name: string, variable: string): Promise<TokenSet> => {
    const file = option(values, name, env, variable);
    return file ? TokenSet.fromFile(resolve(file)) : TokenSet.fromTokens([]);
  };
  const config: ServerConfig = {
    ...SERVER_DEFAULTS,
    repoDir,
    host: option(values, 'host', env, 'OTA_HOST', SERVER_DEFAULTS.host)!,
    port:
      integerOption(option(values, 'port', env, 'OTA_PORT'), 'port', 0, 65535) ??
      SERVER_DEFAULTS.port,
    checkInSeconds:
      integerOption(
        option(values, 'check-in-seconds', env, 'OTA_CHECK_IN_SECONDS'),
        'check-in-seconds',
        5,
        86_400,
      ) ?? SERVER_DEFAULTS.checkInSeconds,
    fleetTokens: await tokens('fleet-token-file', 'OTA_FLEET_TOKEN_FILE'),
    operatorTokens: await tokens('operator-token-file', 'OTA_OPERATOR_TOKEN_FILE'),
    logLevel: logLevel as ServerConfig['logLevel'],
    logRequests: env.OTA_LOG_REQUESTS === 'true' || values['log-requests'] === true,
    trustProxy: env.OTA_TRUST_PROXY === 'true' || values['trust-proxy'] === true,
    rolloutSampleSeconds:
      integerOption(
        option(values, 'rollout-sample-seconds', env, 'OTA_ROLLOUT_SAMPLE_SECONDS'),
        'rollout-sample-seconds',
        1,
        3600,
      ) ?? SERVER_DEFAULTS.rolloutSampleSeconds,
  };
  await access(repositoryLayout(repoDir).metadataDir).catch(() => {
    throw new Error(
      `${repoDir}: no metadata/ folder; create the repository with 'ota-server init'`,
    );
  });
  return {
    config,
    dataDir: resolve(option(values, 'data', env, 'OTA_DATA_DIR', 'ota-data')!),
    databaseUrl: option(values, 'database', env, 'OTA_DATABASE_URL'),
  };
}

/** Runs the server until SIGINT or SIGTERM, then closes connections and the store. */
export async function serveCommand(argv: string[], io: CliIo): Promise<number> {
  const { values } = parseCommandArgs(
    argv,
    {
      repo: { type: 'string' },
      host: { type: 'string' },
      port: { type: 'string' },
      data: { type: 'string' },
      database: { type: 'string' },
      'fleet-token-file': { type: 'string' },
      'operator-token-file': { type: 'string' },
      'check-in-seconds': { type: 'string' },
      'log-level': { type: 'string' },
      'log-requests': { type: 'boolean' },
      'trust-proxy': { type: 'boolean' },
      'rollout-sample-seconds': { type: 'string' },
    },
    { min: 0, max: 0, names: '' },
  );
  const { config, dataDir, databaseUrl } = await serveConfig(values, io.env);
  const store = await openFleetStore({ dataDir, databaseUrl });
  const app = await buildServer({ config, store });
  app.addHook('onClose', async () => store.close());
  try {
    if (config.fleetTokens.size === 0) {
      app.log.warn('no fleet tokens (--fleet-token-file): no device can enrol');
    }
    if (config.operatorTokens.size === 0) {
      app.log.warn('no operator tokens (--operator-token-file): the operator API refuses everyone');
    }
    // A fleet checking in at once opens many connections together: queue them, do not drop them.
    await app.listen({ host: config.host, port: config.port, backlog: config.listenBacklog });
    app.log.info(
      {
        repo: config.repoDir,
        store: store.kind,
        database: databaseUrl ? redact(databaseUrl) : `${dataDir}/fleet.sqlite`,
      },
      'update server ready',
    );
  } catch (error) {
    await app.close();
    throw error;
  }
  const signal = await (io.stopSignal ?? stopSignal());
  app.log.info({ signal }, 'stopping');
  await app.close();
  return 0;
}

function stopSignal(): Promise<string> {
  return new Promise((resolveSignal) => {
    const stop = (signal: string) => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolveSignal(signal);
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}
