/** The little a fleet store needs from a SQL database; SQLite and PostgreSQL each implement it. */
export type SqlDialect = 'sqlite' | 'postgres';

export type SqlValue = string | number | null;

export interface SqlStatement {
  /** Parameters as `?`; the PostgreSQL side numbers them. */
  sql: string;
  params?: SqlValue[];
}

export interface Migration {
  version: number;
  /** DDL for the dialect: same tables and columns on both sides. */
  statements: (dialect: SqlDialect) => string[];
}

export interface SqlDatabase {
  readonly dialect: SqlDialect;
  query<Row>(sql: string, params?: SqlValue[]): Promise<Row[]>;
  /** Resolves to the number of rows changed. */
  execute(sql: string, params?: SqlValue[]): Promise<number>;
  /** Runs the statements in one transaction: all or none. Resolves to each one's changed rows. */
  batch(statements: SqlStatement[]): Promise<number[]>;
  /** Applies the migrations not applied yet, each in its own transaction, one server at a time. */
  migrate(migrations: Migration[]): Promise<number[]>;
  /**
   * Makes a deterministic function callable from SQL (SQLite, where functions live in the
   * process); PostgreSQL defines its own in a migration and has none of this.
   */
  defineFunction?(name: string, fn: (...args: SqlValue[]) => SqlValue): void;
  close(): Promise<void>;
}
