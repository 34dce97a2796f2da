import { createContext } from 'preact';
import { useContext, useEffect, useRef, useState } from 'preact/hooks';
import { API_BASE } from './api.js';
import type { Overview, RolloutView } from './api-types.js';

export type LiveStatus = 'connecting' | 'live' | 'reconnecting' | 'stopped';

type RolloutListener = (rollout: RolloutView) => void;

export interface Live {
  /** The newest overview the server sent, null before the first. */
  overview: Overview | null;
  status: LiveStatus;
  /** Calls `listener` with each roll-out the server says changed; returns the unsubscribe. */
  onRollout: (listener: RolloutListener) => () => void;
}

export const LiveContext = createContext<Live>({
  overview: null,
  status: 'connecting',
  onRollout: () => () => undefined,
});

/** One EventSource on /dashboard/api/events for the whole page, while logged in. */
export function useFleetEvents(): Live {
  const listeners = useRef(new Set<RolloutListener>());
  const [overview, setOverview] = useState<Overview | null>(null);
  const [status, setStatus] = useState<LiveStatus>('connecting');
  useEffect(() => {
    let source: EventSource | undefined;
    const connect = () => {
      source?.close();
      const opened = new EventSource(`${API_BASE}/events`);
      source = opened;
      setStatus('connecting');
      opened.addEventListener('open', () => setStatus('live'));
      // EventSource retries by itself unless the server refused (then it is CLOSED).
      opened.addEventListener('error', () =>
        setStatus(opened.readyState === EventSource.CLOSED ? 'stopped' : 'reconnecting'),
      );
      opened.addEventListener('overview', (event) => {
        setOverview(JSON.parse((event as MessageEvent<string>).data) as Overview);
      });
      opened.addEventListener('rollout', (event) => {
        const rollout = JSON.parse((event as MessageEvent<string>).data) as RolloutView;
        for (const listener of listeners.current) listener(rollout);
      });
    };
    // A page kept in the back/forward cache must not hold its stream open: browsers allow
    // only six connections per server over HTTP/1.1, and each open tab's stream takes one.
    const hide = () => source?.close();
    const show = (event: PageTransitionEvent) => {
      if (event.persisted) connect();
    };
    connect();
    window.addEventListener('pagehide', hide);
    window.addEventListener('pageshow', show);
    return () => {
      window.removeEventListener('pagehide', hide);
      window.removeEventListener('pageshow', show);
      source?.close();
    };
  }, []);
  const [onRollout] = useState(() => (listener: RolloutListener) => {
    listeners.current.add(listener);
    return () => void listeners.current.delete(listener);
  });
  return { overview, status, onRollout };
}

/** Runs `listener` for each roll-out change the server sends while the component is shown. */
export function useRolloutEvents(listener: RolloutListener): void {
  const live = useContext(LiveContext);
  const latest = useRef(listener);
  latest.current = listener;
  useEffect(() => live.onRollout((rollout) => latest.current(rollout)), [live.onRollout]);
}

/** The overview as the server last sent it, or as fetched when newer. */
export function newestOverview(a: Overview | null, b: Overview | null): Overview | null {
  if (!a || !b) return a ?? b;
  return a.generatedAt >= b.generatedAt ? a : b;
}
