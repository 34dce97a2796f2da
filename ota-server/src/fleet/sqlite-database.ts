import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Migration, SqlDatabase, SqlStatement, SqlValue } from './sql-database.js';

const MIGRATIONS_TABLE = `CREATE TABLE IF NOT EXISTS schema_migrations (
  version INTEGER PRIMARY KEY,
  applied_at BIGINT NOT NULL
)`;

/**
 * SQLite through better-sqlite3. Its calls are synchronous, so each statement and each batch
 * runs whole before any other request's: no interleaving inside a transaction.
 */
export class SqliteDatabase implements SqlDatabase {
  readonly dialect = 'sqlite' as const;
  readonly #db: Database.Database;
  readonly #statements = new Map<string, Database.Statement>();

  constructor(path: string) {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    this.#db = new Database(path);
    // WAL: readers do not wait for the writer; NORMAL sync is durable at each checkpoint.
    this.#db.pragma('journal_mode = WAL');
    this.#db.pragma('synchronous = NORMAL');
    this.#db.pragma('foreign_keys = ON');
    this.#db.pragma('busy_timeout = 5000');
  }

  async query<Row>(sql: string, params: SqlValue[] = []): Promise<Row[]> {
    return this.#prepare(sql).all(...params) as Row[];
  }

  async execute(sql: string, params: SqlValue[] = []): Promise<number> {
    return this.#prepare(sql).run(...params).changes;
  }

  async batch(statements: SqlStatement[]): Promise<number[]> {
    const run = this.#db.transaction(() =>
      statements.map(({ sql, params = [] }) => this.#prepare(sql).run(...params).changes),
    );
    return run();
  }

  async migrate(migrations: Migration[]): Promise<number[]> {
    this.#db.exec(MIGRATIONS_TABLE);
    const apply = this.#db.transaction(() => {
      const done = new Set(
        (
          this.#db.prepare('SELECT version FROM schema_migrations').all() as { version: number }[]
        ).map((row) => row.version),
      );
      const applied: number[] = [];
      for (const migration of [...migrations].sort((a, b) => a.version - b.version)) {
        if (done.has(migration.version)) continue;
        for (const statement of migration.statements('sqlite')) this.#db.exec(statement);
        this.#db
          .prepare('INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)')
          .run(migration.version, Date.now());
        applied.push(migration.version);
      }
      return applied;
    });
    // IMMEDIATE: a second process migrating the same file waits instead of failing mid-way.
    return apply.immediate();
  }

  defineFunction(name: string, fn: (...args: SqlValue[]) => SqlValue): void {
    this.#db.function(name, { deterministic: true }, fn);
  }

  async close(): Promise<void> {
    this.#statements.clear();
    this.#db.close();
  }

  #prepare(sql: string): Database.Statement {
    let statement = this.#statements.get(sql);
    if (!statement) {
      statement = this.#db.prepare(sql);
      this.#statements.set(sql, statement);
    }
    return statement;
  }
}
