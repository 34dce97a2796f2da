import { execFile } from 'node:child_process';
import { chown, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';

const run = promisify(execFile);

export interface PostgresCluster {
  /** A connection URL to a new, empty database of this cluster. */
  createDatabase(name: string): Promise<string>;
  stop(): Promise<void>;
}

/** Debian's server binaries: /usr/lib/postgresql/<major>/bin, the newest major. */
async function postgresBin(): Promise<string> {
  const majors = await readdir('/usr/lib/postgresql').catch(() => []);
  const newest = majors
    .filter((name) => /^\d+$/.test(name))
    .sort((a, b) => Number(b) - Number(a))[0];
  if (!newest) {
    throw new Error(
      'PostgreSQL is not installed (/usr/lib/postgresql/*/bin): apt-get install postgresql',
    );
  }
  return `/usr/lib/postgresql/${newest}/bin`;
}

/**
 * A throwaway PostgreSQL cluster in a temporary folder, listening only on a unix socket in
 * that folder. initdb refuses root, so as root it runs as the postgres user. Fails loudly
 * when the server cannot start: tests must not skip PostgreSQL silently.
 */
export async function startPostgresCluster(): Promise<PostgresCluster> {
  const bin = await postgresBin();
  const dir = await mkdtemp(join(tmpdir(), 'ota-pg-'));
  const asRoot = userInfo().uid === 0;
  let owner = userInfo().username;
  if (asRoot) {
    const { stdout } = await run('id', ['-u', 'postgres']);
    const uid = Number(stdout.trim());
    const gid = Number((await run('id', ['-g', 'postgres'])).stdout.trim());
    await chown(dir, uid, gid);
    owner = 'postgres';
  }
  const as = (command: string, args: string[]) =>
    asRoot
      ? run('runuser', ['-u', 'postgres', '--', join(bin, command), ...args])
      : run(join(bin, command), args);
  const data = join(dir, 'data');
  const started = async () => {
    await as('initdb', [
      '-D',
      data,
      '-A',
      'trust',
      '-U',
      owner,
      '-E',
      'UTF8',
      '--no-sync',
      '--no-instructions',
    ]);
    await as('pg_ctl', [
      '-D',
      data,
      '-l',
      join(dir, 'server.log'),
      '-w',
      '-t',
      '30',
      '-o',
      `-c listen_addresses='' -c unix_socket_directories=${dir} -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200`,
      'start',
    ]);
  };
  try {
    await started();
  } catch (error) {
    const log = await run('cat', [join(dir, 'server.log')]).then(
      (r) => r.stdout,
      () => '',
    );
    await rm(dir, { recursive: true, force: true });
    throw new Error(`PostgreSQL did not start: ${(error as Error).message}\n${log}`);
  }
  const url = (database: string) =>
    `postgresql://${owner}@/${database}?host=${encodeURIComponent(dir)}`;
  return {
    async createDatabase(name) {
      const client = new pg.Client({ connectionString: url('postgres') });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE "${name.replace(/"/g, '')}"`);
      } finally {
        await client.end();
      }
      return url(name);
    },
    async stop() {
      await as('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
