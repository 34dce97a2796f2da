import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expiryPolicy } from './expiry.js';
import type { ExpiryPolicy } from './expiry.js';
import type { RepositoryLayout } from './layout.js';
import type { KeyPaths } from './role-keys.js';

/** What every repository operation accepts. */
export interface OperationOptions {
  /** The clock (tests move it). */
  now?: Date;
  /** Overrides the expiry policy that init saved in repository.json. */
  expiries?: Partial<ExpiryPolicy>;
  /** Key files other than keys/<role>.pem; `root` is where the offline root key is now. */
  keyPaths?: KeyPaths;
  /** How long to wait for a concurrent operation's lock. */
  lockTimeoutMs?: number;
  /** Told about things worth an operator's attention (a stale lock taken over). */
  warn?: (message: string) => void;
  /** Called before each metadata file is written, with its name: progress, and crash tests. */
  beforeWrite?: (file: string) => void;
}

/** The repository's own settings, written by init beside keys/ and metadata/. */
export function settingsFile(layout: RepositoryLayout): string {
  return join(layout.dir, 'repository.json');
}

export async function loadExpiryPolicy(
  layout: RepositoryLayout,
  overrides: Partial<ExpiryPolicy> = {},
): Promise<ExpiryPolicy> {
  let saved: Partial<ExpiryPolicy> = {};
  try {
    const settings = JSON.parse(await readFile(settingsFile(layout), 'utf8')) as {
      expiryDays?: Partial<ExpiryPolicy>;
    };
    saved = settings.expiryDays ?? {};
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new Error(`${settingsFile(layout)}: ${(error as Error).message}`);
    }
  }
  return expiryPolicy({ ...saved, ...overrides });
}
