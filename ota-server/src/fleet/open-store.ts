import { join } from 'node:path';
import { PostgresDatabase } from './postgres-database.js';
import { SqlFleetStore } from './sql-fleet-store.js';
import { SqliteDatabase } from './sqlite-database.js';
import type { FleetStore } from './store.js';

export interface FleetStoreLocation {
  /** The server's data folder: the SQLite file lives there unless databaseUrl says otherwise. */
  dataDir: string;
  /** postgres://… or postgresql://… for PostgreSQL; sqlite:PATH for another SQLite file. */
  databaseUrl?: string;
}

export const SQLITE_FILE_NAME = 'fleet.sqlite';

/** Opens the fleet store and brings its schema up to date. */
export async function openFleetStore(location: FleetStoreLocation): Promise<FleetStore> {
  const url = location.databaseUrl?.trim();
  if (!url) return SqlFleetStore.open(new SqliteDatabase(join(location.dataDir, SQLITE_FILE_NAME)));
  if (/^postgres(ql)?:\/\//.test(url)) return SqlFleetStore.open(new PostgresDatabase(url));
  if (url.startsWith('sqlite:')) return SqlFleetStore.open(new SqliteDatabase(url.slice(7)));
  throw new Error(
    `database URL '${redact(url)}': use postgres://… (or postgresql://…) or sqlite:PATH`,
  );
}

/** A URL as it may be printed: without its password. */
export function redact(url: string): string {
  return url.replace(/(\/\/[^:/@]*:)[^@]*@/, '$1***@');
}
