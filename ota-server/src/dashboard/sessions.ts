import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { FleetStore, SessionRecord } from '../fleet/store.js';

export const SESSION_COOKIE = 'edge_session';
/** A session unused this long ends. */
export const SESSION_IDLE_MS = 12 * 60 * 60 * 1000;
/** And any session ends this long after its login. */
export const SESSION_LIFETIME_MS = 7 * 24 * 60 * 60 * 1000;
/** last_used_at is written at most this often: not a database write per request. */
const TOUCH_EVERY_MS = 60 * 1000;

/** The cookie's token as stored: a stolen database holds no usable session. */
export function sessionIdHash(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/** Compares two secrets in constant time (their hashes: lengths may differ). */
export function sameSecret(a: string, b: string): boolean {
  const digest = (text: string) => createHash('sha256').update(text).digest();
  return timingSafeEqual(digest(a), digest(b));
}

/** Dashboard sessions: a random cookie token per login, a CSRF token beside it. */
export class Sessions {
  constructor(
    private readonly store: FleetStore,
    private readonly clock: () => Date,
  ) {}

  async create(username: string): Promise<{ token: string; session: SessionRecord }> {
    const now = this.clock();
    await this.store.deleteExpiredSessions(
      new Date(now.getTime() - SESSION_IDLE_MS),
      new Date(now.getTime() - SESSION_LIFETIME_MS),
    );
    const token = randomBytes(32).toString('base64url');
    const session: SessionRecord = {
      idHash: sessionIdHash(token),
      username,
      csrfToken: randomBytes(32).toString('base64url'),
      createdAt: now,
      lastUsedAt: now,
    };
    await this.store.createSession(session);
    return { token, session };
  }

  /** The live session of a cookie token, or undefined (none, or expired: then it is deleted). */
  async find(token: string | undefined): Promise<SessionRecord | undefined> {
    if (!token || token.length > 128) return undefined;
    const idHash = sessionIdHash(token);
    const session = await this.store.session(idHash);
    if (!session) return undefined;
    const now = this.clock().getTime();
    if (
      now - session.lastUsedAt.getTime() > SESSION_IDLE_MS ||
      now - session.createdAt.getTime() > SESSION_LIFETIME_MS
    ) {
      await this.store.deleteSession(idHash);
      return undefined;
    }
    if (now - session.lastUsedAt.getTime() > TOUCH_EVERY_MS) {
      await this.store.touchSession(idHash, new Date(now));
    }
    return session;
  }

  async end(token: string | undefined): Promise<void> {
    if (token) await this.store.deleteSession(sessionIdHash(token));
  }
}
