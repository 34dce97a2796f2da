import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';

const HASHED = /^sha256:([0-9a-f]{64})$/;
/** A shorter secret could be guessed; a random 32-byte token in base64 has 43 characters. */
const MIN_TOKEN_LENGTH = 16;

function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/**
 * Secrets the server accepts (fleet tokens, operator tokens), held only as SHA-256. Matching
 * looks the hash of the presented token up: comparing hashes leaks nothing usable by timing.
 */
export class TokenSet {
  readonly #hashes: ReadonlySet<string>;

  private constructor(hashes: Iterable<string>) {
    this.#hashes = new Set(hashes);
  }

  static fromTokens(tokens: readonly string[]): TokenSet {
    return TokenSet.fromLines(tokens.join('\n'), 'tokens');
  }

  /**
   * One token per line, or `sha256:<hex>` for a token kept elsewhere; blank lines and lines
   * starting with # are skipped.
   */
  static fromLines(text: string, source: string): TokenSet {
    const hashes: string[] = [];
    text.split(/\r?\n/).forEach((raw, index) => {
      const line = raw.trim();
      if (line === '' || line.startsWith('#')) return;
      const hashed = HASHED.exec(line)?.[1];
      if (hashed) {
        hashes.push(hashed);
      } else if (line.length < MIN_TOKEN_LENGTH) {
        throw new Error(
          `${source} line ${index + 1}: a token needs at least ${MIN_TOKEN_LENGTH} characters`,
        );
      } else {
        hashes.push(sha256Hex(line));
      }
    });
    return new TokenSet(hashes);
  }

  static async fromFile(path: string): Promise<TokenSet> {
    const text = await readFile(path, 'utf8').catch((error: NodeJS.ErrnoException) => {
      throw new Error(`${path}: ${error.code === 'ENOENT' ? 'no such file' : error.message}`);
    });
    return TokenSet.fromLines(text, path);
  }

  get size(): number {
    return this.#hashes.size;
  }

  accepts(token: string | undefined): boolean {
    return token !== undefined && token !== '' && this.#hashes.has(sha256Hex(token));
  }
}

/** The token of an `Authorization: Bearer <token>` header. */
export function bearerToken(header: string | undefined): string | undefined {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  return match?.[1];
}
