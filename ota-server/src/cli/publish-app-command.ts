import { resolve } from 'node:path';
import { publishAppRelease } from '../publish/publish-app.js';
import { option, parseCommandArgs, requiredOption } from './args.js';
import { formatBytes, line, type CliIo } from './io.js';

export const PUBLISH_APP_USAGE =
  'publish-app --repo DIR --board B --version V [--work-dir DIR] FOLDER';

/** Publishes an app release (WASM modules and configuration) from a folder. */
export async function publishAppCommand(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(
    argv,
    {
      repo: { type: 'string' },
      board: { type: 'string' },
      version: { type: 'string' },
      'work-dir': { type: 'string' },
    },
    { min: 1, max: 1, names: 'FOLDER (the app release: modules/<name>/... and config files)' },
  );
  const repoDir = resolve(requiredOption(values, 'repo', io.env, 'OTA_REPO'));
  const board = requiredOption(values, 'board', io.env);
  const version = requiredOption(values, 'version', io.env);
  const workDir = option(values, 'work-dir', io.env, 'OTA_WORK_DIR');
  const folder = resolve(positionals[0]!);
  const result = await publishAppRelease({
    repoDir,
    board,
    version,
    folder,
    workDir: workDir && resolve(workDir),
  });
  const bytes = result.files.reduce((sum, file) => sum + file.length, 0);
  line(
    io.out,
    `published ${result.indexTarget}: ${result.files.length} files, ${formatBytes(bytes)} ` +
      `(targets v${result.versions.targets}, snapshot v${result.versions.snapshot}, timestamp v${result.versions.timestamp})`,
  );
  return 0;
}
