import type {
  DeviceDetailJson,
  DevicePage,
  NewRollout,
  Overview,
  Releases,
  RolloutAction,
  RolloutChanged,
  RolloutDetail,
  RolloutList,
  Session,
} from './api-types.js';

/** The dashboard's only server: everything it asks goes to /dashboard/api (never the device API). */
export const API_BASE = '/dashboard/api';

/** An answer other than 2xx, with the server's `{code, message}`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

let csrfToken = '';
let onSessionLost: () => void = () => undefined;

/** The session's CSRF token, sent with every change request. */
export function setCsrfToken(token: string): void {
  csrfToken = token;
}

/** Called when an answer says the session is gone (expired, logged out elsewhere). */
export function whenSessionLost(callback: () => void): void {
  onSessionLost = callback;
}

async function call<T>(
  method: string,
  path: string,
  body?: unknown,
  signal?: AbortSignal,
): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  // No content-type without a body: the server refuses an empty JSON body.
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET') headers['x-csrf-token'] = csrfToken;
  const response = await fetch(`${API_BASE}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
    signal,
  });
  if (response.status === 204) return undefined as T;
  const json = (await response.json().catch(() => null)) as
    (T & { code?: unknown; message?: unknown }) | null;
  if (!response.ok) {
    const code = typeof json?.code === 'string' ? json.code : `HTTP_${response.status}`;
    const message =
      typeof json?.message === 'string'
        ? json.message
        : `${response.status} ${response.statusText}`.trim();
    if (response.status === 401 && path !== '/login' && path !== '/session') onSessionLost();
    throw new ApiError(response.status, code, message);
  }
  return json as T;
}

const query = (params: Record<string, string | undefined>) => {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) if (value) search.set(key, value);
  const text = search.toString();
  return text ? `?${text}` : '';
};

export const api = {
  session: () => call<Session>('GET', '/session'),
  login: (username: string, password: string) =>
    call<Session>('POST', '/login', { username, password }),
  logout: () => call<void>('POST', '/logout'),
  overview: (signal?: AbortSignal) => call<Overview>('GET', '/overview', undefined, signal),
  devices: (params: Record<string, string | undefined>, signal?: AbortSignal) =>
    call<DevicePage>('GET', `/devices${query(params)}`, undefined, signal),
  device: (id: string, signal?: AbortSignal) =>
    call<DeviceDetailJson>('GET', `/devices/${encodeURIComponent(id)}`, undefined, signal),
  releases: (signal?: AbortSignal) => call<Releases>('GET', '/releases', undefined, signal),
  rollouts: (signal?: AbortSignal) => call<RolloutList>('GET', '/rollouts', undefined, signal),
  rollout: (id: string, signal?: AbortSignal) =>
    call<RolloutDetail>('GET', `/rollouts/${encodeURIComponent(id)}`, undefined, signal),
  startRollout: (rollout: NewRollout) => call<RolloutChanged>('POST', '/rollouts', rollout),
  changeRollout: (id: string, action: RolloutAction, percent?: number) =>
    call<RolloutChanged>(
      'POST',
      `/rollouts/${encodeURIComponent(id)}/${action}`,
      action === 'widen' ? { percent } : undefined,
    ),
  setThreshold: (
    id: string,
    change: { failureThresholdPercent?: number; minDevicesForThreshold?: number },
  ) => call<RolloutChanged>('PATCH', `/rollouts/${encodeURIComponent(id)}`, change),
};

/** True for the error a cancelled request (a view left early) ends with. */
export function isAbort(error: unknown): boolean {
  return error instanceof DOMException && error.name === 'AbortError';
}
