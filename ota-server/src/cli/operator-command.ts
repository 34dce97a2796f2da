import { resolve } from 'node:path';
import { weakPasswordReason, hashPassword } from '../dashboard/password-hash.js';
import { openFleetStore } from '../fleet/open-store.js';
import { option, parseCommandArgs } from './args.js';
import { line, UsageError, type CliIo } from './io.js';

export const OPERATOR_USAGE =
  'operator add USERNAME | remove USERNAME | list   [--data DIR] [--database URL]\n' +
  "        (the dashboard's logins; add reads the password from stdin, or asks on a terminal)";

const USERNAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;

type Input = NonNullable<CliIo['input']>;

/** One line of piped input, without its line end. */
async function readLine(input: Input): Promise<string> {
  let text = '';
  for await (const chunk of input) {
    text += String(chunk);
    const end = text.search(/\r?\n/);
    if (end >= 0) return text.slice(0, end);
  }
  return text;
}

/** Asks on the terminal without echo; Ctrl-C or Ctrl-D give up. */
function prompt(input: Input, err: CliIo['err'], question: string): Promise<string> {
  return new Promise((resolvePassword, reject) => {
    err.write(question);
    input.setRawMode?.(true);
    input.resume();
    let typed = '';
    const done = (error?: Error) => {
      input.off('data', onData);
      input.setRawMode?.(false);
      input.pause();
      err.write('\n');
      if (error) reject(error);
      else resolvePassword(typed);
    };
    const onData = (chunk: Buffer | string) => {
      for (const char of String(chunk)) {
        if (char === '\r' || char === '\n') return done();
        if (char === '\u0003' || char === '\u0004') return done(new Error('no password given'));
        if (char === '\u007f' || char === '\b') typed = [...typed].slice(0, -1).join('');
        else typed += char;
      }
    };
    input.on('data', onData);
  });
}

async function newPassword(io: CliIo): Promise<string> {
  const input = io.input ?? process.stdin;
  if (!input.isTTY) return readLine(input);
  const password = await prompt(input, io.err, 'password: ');
  if ((await prompt(input, io.err, 'again: ')) !== password) {
    throw new Error('the two passwords differ');
  }
  return password;
}

/** The dashboard's operators: rows in the fleet store, passwords as scrypt hashes. */
export async function operatorCommand(argv: string[], io: CliIo): Promise<number> {
  const [action, ...rest] = argv;
  const actions = ['add', 'remove', 'list'];
  if (!action || !actions.includes(action)) {
    throw new UsageError(`operator needs one of: ${actions.join(', ')}`);
  }
  const { values, positionals } = parseCommandArgs(
    rest,
    { data: { type: 'string' }, database: { type: 'string' } },
    action === 'list' ? { min: 0, max: 0, names: '' } : { min: 1, max: 1, names: 'USERNAME' },
  );
  const username = positionals[0] ?? '';
  if (action !== 'list' && !USERNAME.test(username)) {
    throw new UsageError(
      `'${username}' is not a username: letters, digits and . _ @ -, at most 64, starting with a letter or digit`,
    );
  }
  const password = action === 'add' ? await newPassword(io) : '';
  if (action === 'add') {
    const weak = weakPasswordReason(password);
    if (weak) throw new Error(weak);
  }
  const store = await openFleetStore({
    dataDir: resolve(option(values, 'data', io.env, 'OTA_DATA_DIR', 'ota-data')!),
    databaseUrl: option(values, 'database', io.env, 'OTA_DATABASE_URL'),
  });
  try {
    switch (action) {
      case 'add': {
        const added = await store.addOperator({
          username,
          passwordHash: await hashPassword(password),
          createdAt: new Date(),
        });
        if (!added) throw new Error(`operator ${username} exists already (remove it first)`);
        line(io.out, `operator ${username} added`);
        break;
      }
      case 'remove':
        if (!(await store.removeOperator(username))) throw new Error(`no operator ${username}`);
        line(io.out, `operator ${username} removed, and their sessions`);
        break;
      default: {
        const operators = await store.listOperators();
        if (operators.length === 0) line(io.out, 'no operators');
        for (const operator of operators) {
          line(io.out, `${operator.username}  (since ${operator.createdAt.toISOString()})`);
        }
      }
    }
  } finally {
    await store.close();
  }
  return 0;
}
