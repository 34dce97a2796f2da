import { hashPassword } from '../../src/dashboard/password-hash.js';
import type { FleetStore } from '../../src/fleet/store.js';

export const OPERATOR = { username: 'alice', password: 'correct horse battery' };

/** An operator row with a cheap hash (N = 2^10): the login verifies with the hash's own cost. */
export async function addOperator(store: FleetStore, operator = OPERATOR): Promise<void> {
  await store.addOperator({
    username: operator.username,
    passwordHash: await hashPassword(operator.password, { N: 1024, r: 8, p: 1 }),
    createdAt: new Date(),
  });
}

export interface Answer {
  status: number;
  headers: Headers;
  body: Record<string, unknown>;
}

/** A browser's view of the dashboard API: its session cookie and CSRF token. */
export class DashboardClient {
  cookie = '';
  csrfToken = '';

  constructor(readonly url: string) {}

  async login(
    username = OPERATOR.username,
    password = OPERATOR.password,
    headers: Record<string, string> = {},
  ): Promise<Answer> {
    const answer = await this.request(
      'POST',
      '/dashboard/api/login',
      { username, password },
      {
        headers,
        csrf: false,
      },
    );
    const setCookie = answer.headers.get('set-cookie');
    if (answer.status === 200 && setCookie) {
      this.cookie = setCookie.split(';', 1)[0]!;
      this.csrfToken = String(answer.body.csrfToken);
    }
    return answer;
  }

  get(path: string, headers: Record<string, string> = {}): Promise<Answer> {
    return this.request('GET', path, undefined, { headers });
  }

  send(method: string, path: string, body?: unknown, csrf = true): Promise<Answer> {
    return this.request(method, path, body, { csrf });
  }

  async request(
    method: string,
    path: string,
    body: unknown,
    options: { headers?: Record<string, string>; csrf?: boolean } = {},
  ): Promise<Answer> {
    const response = await fetch(`${this.url}${path}`, {
      method,
      headers: {
        ...(this.cookie ? { cookie: this.cookie } : {}),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...(options.csrf && this.csrfToken ? { 'x-csrf-token': this.csrfToken } : {}),
        ...options.headers,
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    let parsed: Record<string, unknown> = {};
    try {
      parsed = text ? (JSON.parse(text) as Record<string, unknown>) : {};
    } catch {
      parsed = { text };
    }
    return { status: response.status, headers: response.headers, body: parsed };
  }
}
