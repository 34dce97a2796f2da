import { resolve } from 'node:path';
import { refreshTimestamp, renewRoot, repositoryStatus, rotateKeys } from '../tuf/index.js';
import { isRoleName } from '../tuf/metadata.js';
import { option, parseCommandArgs, requiredOption } from './args.js';
import { line, UsageError, type CliIo } from './io.js';

export const ROTATE_KEYS_USAGE =
  'rotate-keys --repo DIR --role root|targets|snapshot|timestamp --root-key FILE [--new-root-key FILE]';
export const REFRESH_USAGE = 'refresh --repo DIR';
export const RENEW_ROOT_USAGE = 'renew-root --repo DIR --root-key FILE';
export const STATUS_USAGE = 'status --repo DIR [--json]';

function repoOf(values: Record<string, string | boolean | undefined>, io: CliIo): string {
  return resolve(requiredOption(values, 'repo', io.env, 'OTA_REPO'));
}

export async function rotateKeysCommand(argv: string[], io: CliIo): Promise<number> {
  const { values } = parseCommandArgs(
    argv,
    {
      repo: { type: 'string' },
      role: { type: 'string' },
      'root-key': { type: 'string' },
      'new-root-key': { type: 'string' },
    },
    { min: 0, max: 0, names: '' },
  );
  const role = requiredOption(values, 'role', io.env);
  if (!isRoleName(role))
    throw new UsageError(`--role must be root, targets, snapshot or timestamp`);
  const newRootKey = option(values, 'new-root-key', io.env);
  if (role === 'root' && !newRootKey) {
    throw new UsageError('rotating root needs --new-root-key FILE (where the new key goes)');
  }
  const result = await rotateKeys(repoOf(values, io), role, {
    rootKeyPath: resolve(requiredOption(values, 'root-key', io.env, 'OTA_ROOT_KEY')),
    newRootKeyPath: newRootKey && resolve(newRootKey),
    warn: (message) => line(io.err, `warning: ${message}`),
  });
  line(
    io.out,
    `${role} key is now ${result.keyId} (${result.keyPath}); root version ${result.rootVersion}`,
  );
  if (role === 'root') line(io.out, `move ${result.keyPath} offline too`);
  return 0;
}

export async function refreshCommand(argv: string[], io: CliIo): Promise<number> {
  const { values } = parseCommandArgs(
    argv,
    { repo: { type: 'string' } },
    { min: 0, max: 0, names: '' },
  );
  const result = await refreshTimestamp(repoOf(values, io), {
    warn: (message) => line(io.err, `warning: ${message}`),
  });
  line(
    io.out,
    `re-signed ${result.resigned.join(', ')}: targets v${result.versions.targets}, snapshot v${result.versions.snapshot}, timestamp v${result.versions.timestamp}`,
  );
  return 0;
}

export async function renewRootCommand(argv: string[], io: CliIo): Promise<number> {
  const { values } = parseCommandArgs(
    argv,
    { repo: { type: 'string' }, 'root-key': { type: 'string' } },
    { min: 0, max: 0, names: '' },
  );
  const result = await renewRoot(repoOf(values, io), {
    rootKeyPath: resolve(requiredOption(values, 'root-key', io.env, 'OTA_ROOT_KEY')),
  });
  line(io.out, `root version ${result.rootVersion}, expires ${result.expires}`);
  return 0;
}

/** Exit 1 when a client would reject the repository now; warnings alone keep 0. */
export async function statusCommand(argv: string[], io: CliIo): Promise<number> {
  const { values } = parseCommandArgs(
    argv,
    { repo: { type: 'string' }, json: { type: 'boolean' } },
    { min: 0, max: 0, names: '' },
  );
  const status = await repositoryStatus(repoOf(values, io));
  if (values.json) {
    line(io.out, JSON.stringify(status, null, 2));
  } else {
    for (const [role, info] of Object.entries(status.roles)) {
      line(
        io.out,
        `${role.padEnd(9)} v${String(info.version).padEnd(4)} expires ${info.expires} (${info.daysLeft.toFixed(1)} days)`,
      );
    }
    line(io.out, `targets: ${status.targetsCount}`);
    for (const warning of status.warnings) line(io.out, `warning: ${warning}`);
    for (const problem of status.problems) line(io.out, `problem: ${problem}`);
  }
  return status.problems.length > 0 ? 1 : 0;
}
