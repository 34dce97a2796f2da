import { resolve } from 'node:path';
import { DEFAULT_DELTA_COUNT, publishRelease } from '../publish/publish-release.js';
import type { DeltaMaker } from '../publish/delta-maker.js';
import { integerOption, option, parseCommandArgs, requiredOption } from './args.js';
import { formatBytes, line, ProgressPrinter, type CliIo } from './io.js';

export const PUBLISH_USAGE =
  'publish --repo DIR --board B --version V [--deltas N | --delta-from V,V...] [--work-dir DIR] IMAGE';

/** Publishes a slot image and its deltas, printing progress on stderr and the result on stdout. */
export async function publishCommand(
  argv: string[],
  io: CliIo,
  makeDelta?: DeltaMaker,
): Promise<number> {
  const { values, positionals } = parseCommandArgs(
    argv,
    {
      repo: { type: 'string' },
      board: { type: 'string' },
      version: { type: 'string' },
      deltas: { type: 'string' },
      'delta-from': { type: 'string' },
      'work-dir': { type: 'string' },
    },
    { min: 1, max: 1, names: 'IMAGE (the ext4 slot image to publish)' },
  );
  const repoDir = resolve(requiredOption(values, 'repo', io.env, 'OTA_REPO'));
  const board = requiredOption(values, 'board', io.env);
  const version = requiredOption(values, 'version', io.env);
  const deltaCount =
    integerOption(option(values, 'deltas', io.env), 'deltas', 0, 20) ?? DEFAULT_DELTA_COUNT;
  const deltaFrom = option(values, 'delta-from', io.env)
    ?.split(',')
    .map((from) => from.trim())
    .filter(Boolean);
  const imagePath = resolve(positionals[0]!);
  const workDir = option(values, 'work-dir', io.env, 'OTA_WORK_DIR');
  const printer = new ProgressPrinter(io.err);

  const result = await publishRelease({
    repoDir,
    board,
    version,
    imagePath,
    deltaCount,
    deltaFrom,
    makeDelta,
    workDir: workDir && resolve(workDir),
    onProgress: (event) => {
      switch (event.step) {
        case 'checked':
          line(
            io.err,
            `${imagePath}: ext4 slot image, ${formatBytes(event.imageBytes)}; ` +
              (event.previous.length
                ? `deltas from ${event.previous.join(', ')}`
                : `the first release of ${board}, no delta`),
          );
          break;
        case 'delta': {
          const phase = event.progress.phase ? ` ${event.progress.phase}` : '';
          printer.update(
            `delta ${event.index}/${event.count} from ${event.sourceVersion}${phase}`,
            event.progress.bytesDone,
            event.progress.bytesTotal,
          );
          break;
        }
        case 'delta-done':
          line(
            io.err,
            `delta ${event.index}/${event.count} from ${event.sourceVersion}: ${formatBytes(event.bytes)}`,
          );
          break;
        case 'signing':
          line(io.err, 'storing targets and signing metadata');
          break;
      }
    },
  });
  line(
    io.out,
    `published ${result.imageTarget} (targets v${result.versions.targets}, snapshot v${result.versions.snapshot}, timestamp v${result.versions.timestamp})`,
  );
  for (const delta of result.deltaTargets) line(io.out, `  delta ${delta}`);
  return 0;
}
