import { useState } from 'preact/hooks';
import { api } from '../api.js';
import type { Session } from '../api-types.js';
import { useReportError } from '../errors.js';

/** The login form: a real form, so Enter submits and password managers recognise it. */
export function Login({ onLogin }: { onLogin: (session: Session) => void }) {
  const report = useReportError();
  const [busy, setBusy] = useState(false);

  const submit = async (event: SubmitEvent) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget as HTMLFormElement);
    const field = (name: string) => {
      const value = form.get(name);
      return typeof value === 'string' ? value : '';
    };
    setBusy(true);
    try {
      onLogin(await api.login(field('username'), field('password')));
    } catch (error) {
      report(error);
    } finally {
      setBusy(false);
    }
  };

  return (
    <main id="main" class="login">
      <h1>Fleet dashboard</h1>
      <form class="stack" onSubmit={(event) => void submit(event)}>
        <label for="username">Username</label>
        <input id="username" name="username" autocomplete="username" required maxLength={128} />
        <label for="password">Password</label>
        <input
          id="password"
          name="password"
          type="password"
          autocomplete="current-password"
          required
        />
        <button type="submit" class="primary" disabled={busy}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
      </form>
    </main>
  );
}
