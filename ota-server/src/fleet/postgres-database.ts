import pg from 'pg';
import type { Migration, SqlDatabase, SqlStatement, SqlValue } from './sql-database.js';

const MIGRATIONS_TABLE = `CREATE TABLE IF NOT EXISTS schema_migrations (
  version INTEGER PRIMARY KEY,
  applied_at BIGINT NOT NULL
)`;
/** Any constant shared by every server of a fleet: the advisory lock that serialises migrations. */
const MIGRATION_LOCK_KEY = 0x0ed6e0a7;
const INT8_OID = 20;

/** `?` placeholders to PostgreSQL's `$1, $2, …` (our SQL has no `?` inside literals). */
export function numberPlaceholders(sql: string): string {
  let index = 0;
  return sql.replace(/\?/g, () => `$${++index}`);
}

/** Times are BIGINT milliseconds: well inside a double's exact range. */
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') => {
    if (oid === INT8_OID) return (value: string) => Number(value);
    const parser: unknown = pg.types.getTypeParser(oid, format);
    return parser;
  }) as typeof pg.types.getTypeParser,
};

/** PostgreSQL through a pg connection pool. */
export class PostgresDatabase implements SqlDatabase {
  readonly dialect = 'postgres' as const;
  readonly #pool: pg.Pool;

  constructor(connectionString: string, poolSize = 10) {
    this.#pool = new pg.Pool({ connectionString, max: poolSize, types });
    // An idle client losing its connection must not take the process down.
    this.#pool.on('error', () => undefined);
  }

  async query<Row>(sql: string, params: SqlValue[] = []): Promise<Row[]> {
    const result = await this.#pool.query(numberPlaceholders(sql), params);
    return result.rows as Row[];
  }

  async execute(sql: string, params: SqlValue[] = []): Promise<number> {
    const result = await this.#pool.query(numberPlaceholders(sql), params);
    return result.rowCount ?? 0;
  }

  async batch(statements: SqlStatement[]): Promise<number[]> {
    return this.#inTransaction(async (client) => {
      const changed: number[] = [];
      for (const { sql, params = [] } of statements) {
        const result = await client.query(numberPlaceholders(sql), params);
        changed.push(result.rowCount ?? 0);
      }
      return changed;
    });
  }

  async migrate(migrations: Migration[]): Promise<number[]> {
    return this.#inTransaction(async (client) => {
      // Servers starting together: the first migrates, the others wait and find it done.
      await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
      await client.query(MIGRATIONS_TABLE);
      const done = new Set(
        (await client.query<{ version: number }>('SELECT version FROM schema_migrations')).rows.map(
          (row) => row.version,
        ),
      );
      const applied: number[] = [];
      for (const migration of [...migrations].sort((a, b) => a.version - b.version)) {
        if (done.has(migration.version)) continue;
        for (const statement of migration.statements('postgres')) await client.query(statement);
        await client.query('INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)', [
          migration.version,
          Date.now(),
        ]);
        applied.push(migration.version);
      }
      return applied;
    });
  }

  async close(): Promise<void> {
    await this.#pool.end();
  }

  async #inTransaction<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.#pool.connect();
    try {
      await client.query('BEGIN');
      const result = await work(client);
      await client.query('COMMIT');
      return result;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  }
}
