import { resolve } from 'node:path';
import { initRepository } from '../tuf/index.js';
import { ROLE_NAMES } from '../tuf/metadata.js';
import { parseCommandArgs, requiredOption } from './args.js';
import { line, type CliIo } from './io.js';

export const INIT_USAGE = 'init --repo DIR';

/** Creates a repository and says where the root key is: it belongs offline. */
export async function initCommand(argv: string[], io: CliIo): Promise<number> {
  const { values } = parseCommandArgs(
    argv,
    { repo: { type: 'string' } },
    {
      min: 0,
      max: 0,
      names: '',
    },
  );
  const repo = resolve(requiredOption(values, 'repo', io.env, 'OTA_REPO'));
  const result = await initRepository(repo);
  line(io.out, `initialised a TUF repository in ${repo}`);
  for (const role of ROLE_NAMES) line(io.out, `  ${role.padEnd(9)} key ${result.keyIds[role]}`);
  line(io.out, `root key: ${result.rootKeyPath}`);
  line(
    io.out,
    '  move it offline now (an encrypted USB stick, a vault): only rotate-keys and renew-root need it,',
  );
  line(
    io.out,
    '  given back with --root-key; publish, refresh and serve use the online keys in keys/.',
  );
  line(
    io.out,
    `expiry in days: ${Object.entries(result.expiryDays)
      .map(([role, days]) => `${role} ${days}`)
      .join(
        ', ',
      )}; run 'ota-server refresh' daily (the timestamp lives ${result.expiryDays.timestamp} day(s))`,
  );
  return 0;
}
