import { parseArgs } from 'node:util';

const USAGE = `usage: ota-server <command> [options]

The update server for edge fleets. Its commands (init, publish, serve,
rotate-keys, refresh, status) arrive with the update server's issue; this
release has only the workspace and its tests.
`;

/** Runs the ota-server command line; resolves to the process exit code. */
export function runCli(
  argv: string[],
  out: NodeJS.WritableStream = process.stdout,
  err: NodeJS.WritableStream = process.stderr,
): number {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: false,
    options: { help: { type: 'boolean', short: 'h' } },
  });
  if (values.help || positionals.length === 0) {
    out.write(USAGE);
    return values.help ? 0 : 2;
  }
  err.write(`ota-server: unknown command '${positionals[0]}'\n${USAGE}`);
  return 2;
}
