import { useCallback, useEffect, useState } from 'preact/hooks';
import { ApiError, api, isAbort, setCsrfToken, whenSessionLost } from './api.js';
import type { Session } from './api-types.js';
import { ErrorContext } from './errors.js';
import { errorMessage } from './format.js';
import { LiveContext, useFleetEvents, type LiveStatus } from './live.js';
import { Link, useLocation, type Location } from './router.js';
import { DeviceView } from './views/device.js';
import { DevicesView } from './views/devices.js';
import { Login } from './views/login.js';
import { OverviewView } from './views/overview.js';
import { ReleasesView } from './views/releases.js';
import { RolloutDetailView } from './views/rollout.js';
import { RolloutsView } from './views/rollouts.js';

type SessionState = { kind: 'checking' } | { kind: 'out' } | { kind: 'in'; session: Session };

/** The page: asks for the session, then shows the login form or the dashboard. */
export function App() {
  const [state, setState] = useState<SessionState>({ kind: 'checking' });
  const [error, setError] = useState<string | null>(null);
  const location = useLocation();

  const report = useCallback((problem: unknown) => {
    if (isAbort(problem)) return;
    setError(errorMessage(problem));
  }, []);
  const signIn = useCallback((session: Session) => {
    setCsrfToken(session.csrfToken);
    setError(null);
    setState({ kind: 'in', session });
  }, []);

  useEffect(() => {
    whenSessionLost(() => setState({ kind: 'out' }));
    api.session().then(signIn, (problem: unknown) => {
      if (!(problem instanceof ApiError && problem.status === 401)) report(problem);
      setState({ kind: 'out' });
    });
  }, [signIn, report]);
  // A message belongs to the view it came from.
  useEffect(() => setError(null), [location.path, location.query.toString()]);

  return (
    <ErrorContext.Provider value={report}>
      <a class="skip-link" href="#main">
        Skip to content
      </a>
      <div role="alert" class={error ? 'alert' : 'alert empty'}>
        {error && (
          <>
            <span>{error}</span>
            <button type="button" class="link" onClick={() => setError(null)}>
              Dismiss
            </button>
          </>
        )}
      </div>
      {state.kind === 'checking' ? (
        <main id="main">
          <p class="muted">Loading…</p>
        </main>
      ) : state.kind === 'out' ? (
        <Login onLogin={signIn} />
      ) : (
        <Dashboard
          session={state.session}
          location={location}
          onLogout={() => setState({ kind: 'out' })}
        />
      )}
    </ErrorContext.Provider>
  );
}

const NAV: { href: string; label: string; section: string }[] = [
  { href: '/', label: 'Overview', section: '' },
  { href: '/devices', label: 'Devices', section: 'devices' },
  { href: '/releases', label: 'Releases', section: 'releases' },
  { href: '/rollouts', label: 'Roll-outs', section: 'rollouts' },
];

const LIVE_LABELS: Record<LiveStatus, string> = {
  connecting: 'Connecting…',
  live: 'Live',
  reconnecting: 'Reconnecting…',
  stopped: 'Live updates stopped: reload the page',
};

function Dashboard({
  session,
  location,
  onLogout,
}: {
  session: Session;
  location: Location;
  onLogout: () => void;
}) {
  const live = useFleetEvents();
  const [menuOpen, setMenuOpen] = useState(false);
  const section = location.path.split('/')[1] ?? '';
  useEffect(() => setMenuOpen(false), [location.path]);

  const logout = async () => {
    try {
      await api.logout();
    } finally {
      onLogout();
    }
  };

  return (
    <LiveContext.Provider value={live}>
      <header class="top">
        <p class="brand">Fleet dashboard</p>
        <button
          type="button"
          class="menu-toggle"
          aria-expanded={menuOpen}
          aria-controls="main-nav"
          onClick={() => setMenuOpen(!menuOpen)}
        >
          Menu
        </button>
        <nav id="main-nav" aria-label="Main" class={menuOpen ? 'open' : ''}>
          <ul>
            {NAV.map((item) => (
              <li key={item.href}>
                <Link href={item.href} current={section === item.section}>
                  {item.label}
                </Link>
              </li>
            ))}
          </ul>
          <p class="who">
            <span class={`live live-${live.status}`} role="status">
              {LIVE_LABELS[live.status]}
            </span>{' '}
            · {session.username}{' '}
            <button type="button" class="link" onClick={() => void logout()}>
              Sign out
            </button>
          </p>
        </nav>
      </header>
      <main id="main">
        <Route location={location} />
      </main>
    </LiveContext.Provider>
  );
}

function Route({ location }: { location: Location }) {
  const [section = '', id] = location.path.split('/').filter(Boolean);
  const param = id === undefined ? undefined : decodeURIComponent(id);
  switch (section) {
    case '':
      return <OverviewView location={location} />;
    case 'devices':
      return param === undefined ? (
        <DevicesView location={location} />
      ) : (
        <DeviceView key={param} location={location} deviceId={param} />
      );
    case 'releases':
      return <ReleasesView location={location} />;
    case 'rollouts':
      return param === undefined ? (
        <RolloutsView location={location} />
      ) : (
        <RolloutDetailView key={param} location={location} id={param} />
      );
    default:
      return (
        <>
          <h1>Not found</h1>
          <p>
            Nothing here. <Link href="/">Back to the overview</Link>
          </p>
        </>
      );
  }
}
