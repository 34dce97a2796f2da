import { INIT_USAGE, initCommand } from './cli/init-command.js';
import { line, UsageError, type CliIo } from './cli/io.js';
import { PUBLISH_APP_USAGE, publishAppCommand } from './cli/publish-app-command.js';
import { PUBLISH_USAGE, publishCommand } from './cli/publish-command.js';
import {
  REFRESH_USAGE,
  RENEW_ROOT_USAGE,
  ROTATE_KEYS_USAGE,
  STATUS_USAGE,
  refreshCommand,
  renewRootCommand,
  rotateKeysCommand,
  statusCommand,
} from './cli/repository-commands.js';
import { OPERATOR_USAGE, operatorCommand } from './cli/operator-command.js';
import { ROLLOUT_USAGE, rolloutCommand } from './cli/rollout-command.js';
import { SERVE_USAGE, serveCommand } from './cli/serve-command.js';
import type { DeltaMaker } from './publish/delta-maker.js';

export type { CliIo } from './cli/io.js';

const COMMANDS: Record<string, (argv: string[], io: CliIo, deps: CliDeps) => Promise<number>> = {
  init: initCommand,
  publish: (argv, io, deps) => publishCommand(argv, io, deps.makeDelta),
  'publish-app': publishAppCommand,
  serve: serveCommand,
  'rotate-keys': rotateKeysCommand,
  'renew-root': renewRootCommand,
  refresh: refreshCommand,
  status: statusCommand,
  rollout: rolloutCommand,
  operator: operatorCommand,
};

export const USAGE = `usage: ota-server <command> [options]

The update server for edge fleets: a TUF repository of slot images and BSDIFF40 deltas,
served over HTTP with the device API and staged roll-outs, and app releases (WASM modules
and configuration) that devices install without a reboot.

  ${INIT_USAGE}
  ${PUBLISH_USAGE}
  ${PUBLISH_APP_USAGE}
  ${SERVE_USAGE}
  ${ROTATE_KEYS_USAGE}
  ${RENEW_ROOT_USAGE}
  ${REFRESH_USAGE}
  ${STATUS_USAGE}
  ${ROLLOUT_USAGE}
  ${OPERATOR_USAGE}

Every --repo may come from OTA_REPO; serve reads OTA_HOST, OTA_PORT, OTA_DATA_DIR,
OTA_DATABASE_URL, OTA_FLEET_TOKEN_FILE, OTA_OPERATOR_TOKEN_FILE, OTA_LOG_LEVEL too.
Exit codes: 0 done, 1 failed (one line says why), 2 bad usage.
`;

export interface CliDeps {
  /** The delta generator publish uses (tests pass their own). */
  makeDelta?: DeltaMaker;
}

/** Runs the ota-server command line; resolves to the process exit code. */
export async function runCli(
  argv: string[],
  io: Partial<CliIo> = {},
  deps: CliDeps = {},
): Promise<number> {
  const full: CliIo = {
    out: io.out ?? process.stdout,
    err: io.err ?? process.stderr,
    env: io.env ?? process.env,
    stopSignal: io.stopSignal,
    input: io.input ?? process.stdin,
  };
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    (command === undefined ? full.err : full.out).write(USAGE);
    return command === undefined ? 2 : 0;
  }
  const run = COMMANDS[command];
  if (!run) {
    line(full.err, `ota-server: unknown command '${command}'`);
    full.err.write(USAGE);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    full.out.write(USAGE);
    return 0;
  }
  try {
    return await run(rest, full, deps);
  } catch (error) {
    if (error instanceof UsageError) {
      line(full.err, `ota-server ${command}: ${error.message} (see ota-server --help)`);
      return 2;
    }
    line(full.err, `ota-server ${command}: ${(error as Error).message}`);
    return 1;
  }
}
