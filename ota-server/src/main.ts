import { runCli } from './cli.js';

/** The ota-server command: its exit code is the command's. */
process.exitCode = await runCli(process.argv.slice(2));
