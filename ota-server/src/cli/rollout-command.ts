import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { integerOption, option, parseCommandArgs, requiredOption } from './args.js';
import { line, UsageError, type CliIo } from './io.js';

export const ROLLOUT_USAGE =
  'rollout create --board B --version V --percent P | widen ID --percent P | pause ID |\n' +
  '        resume ID | cancel ID | list [--board B]   [--server URL] [--operator-token-file F]';

const DEFAULT_SERVER = 'http://127.0.0.1:8443';

interface RolloutJson {
  id: string;
  board: string;
  version: string;
  percent: number;
  state: string;
  updatedAt: string;
}

/** The operator token: OTA_OPERATOR_TOKEN, or the first token line of the file. */
async function operatorToken(file: string | undefined, env: NodeJS.ProcessEnv): Promise<string> {
  if (env.OTA_OPERATOR_TOKEN) return env.OTA_OPERATOR_TOKEN;
  if (!file) {
    throw new UsageError(
      '--operator-token-file is required (or OTA_OPERATOR_TOKEN_FILE, OTA_OPERATOR_TOKEN)',
    );
  }
  const text = await readFile(resolve(file), 'utf8');
  const token = text
    .split(/\r?\n/)
    .map((entry) => entry.trim())
    .find((entry) => entry !== '' && !entry.startsWith('#') && !entry.startsWith('sha256:'));
  if (!token) throw new Error(`${file}: no token in it (sha256: lines are for the server only)`);
  return token;
}

function describe(rollout: RolloutJson): string {
  return `${rollout.id}  ${rollout.board} ${rollout.version}  ${rollout.percent}%  ${rollout.state}  (${rollout.updatedAt})`;
}

/**
 * Roll-outs through a running server's operator API, so that the server checks every change
 * (published release, allowed transitions) the same way for the CLI and the dashboard.
 */
export async function rolloutCommand(argv: string[], io: CliIo): Promise<number> {
  const [action, ...rest] = argv;
  const actions = ['create', 'widen', 'pause', 'resume', 'cancel', 'list'];
  if (!action || !actions.includes(action)) {
    throw new UsageError(`rollout needs one of: ${actions.join(', ')}`);
  }
  const needsId = !['create', 'list'].includes(action);
  const { values, positionals } = parseCommandArgs(
    rest,
    {
      board: { type: 'string' },
      version: { type: 'string' },
      percent: { type: 'string' },
      server: { type: 'string' },
      'operator-token-file': { type: 'string' },
    },
    needsId ? { min: 1, max: 1, names: 'ID (the roll-out id)' } : { min: 0, max: 0, names: '' },
  );
  const server = option(values, 'server', io.env, 'OTA_SERVER_URL', DEFAULT_SERVER)!.replace(
    /\/+$/,
    '',
  );
  const token = await operatorToken(
    option(values, 'operator-token-file', io.env, 'OTA_OPERATOR_TOKEN_FILE'),
    io.env,
  );
  const percent = () =>
    integerOption(requiredOption(values, 'percent', io.env), 'percent', 0, 100)!;

  let method = 'POST';
  let path: string;
  let body: unknown;
  switch (action) {
    case 'create':
      path = '/api/v1/rollouts';
      body = {
        board: requiredOption(values, 'board', io.env),
        version: requiredOption(values, 'version', io.env),
        percent: percent(),
      };
      break;
    case 'widen':
      path = `/api/v1/rollouts/${encodeURIComponent(positionals[0]!)}/widen`;
      body = { percent: percent() };
      break;
    case 'list': {
      method = 'GET';
      const board = option(values, 'board', io.env);
      path = `/api/v1/rollouts${board ? `?board=${encodeURIComponent(board)}` : ''}`;
      break;
    }
    default:
      path = `/api/v1/rollouts/${encodeURIComponent(positionals[0]!)}/${action}`;
  }

  let response: Response;
  try {
    response = await fetch(`${server}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
  } catch (error) {
    throw new Error(
      `${server}: ${(error as Error & { cause?: Error }).cause?.message ?? (error as Error).message}`,
    );
  }
  const answer = (await response.json().catch(() => ({}))) as Record<string, unknown>;
  if (!response.ok) {
    const code = typeof answer.code === 'string' ? answer.code : '';
    const message = typeof answer.message === 'string' ? answer.message : '';
    throw new Error(`${method} ${path}: ${response.status} ${code} ${message}`.trim());
  }
  if (action === 'list') {
    const rollouts = (answer.rollouts ?? []) as RolloutJson[];
    if (rollouts.length === 0) line(io.out, 'no roll-outs');
    for (const rollout of rollouts) line(io.out, describe(rollout));
  } else {
    line(io.out, describe(answer as unknown as RolloutJson));
  }
  return 0;
}
