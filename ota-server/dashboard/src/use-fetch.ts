import { useEffect, useState } from 'preact/hooks';
import { useReportError } from './errors.js';

export interface Fetched<T> {
  data: T | null;
  loading: boolean;
  /** Fetches again (after a change, or when the server says something changed). */
  reload: () => void;
  set: (data: T) => void;
}

/**
 * Fetches when a key changes; a request still running is aborted when a newer one starts or
 * the view goes away, so an old answer never replaces a newer one.
 */
export function useFetch<T>(load: (signal: AbortSignal) => Promise<T>, key: string): Fetched<T> {
  const report = useReportError();
  const [data, setData] = useState<T | null>(null);
  const [loading, setLoading] = useState(true);
  const [round, setRound] = useState(0);
  useEffect(() => {
    const controller = new AbortController();
    setLoading(true);
    load(controller.signal)
      .then((answer) => {
        if (!controller.signal.aborted) setData(answer);
      })
      .catch(report)
      .finally(() => {
        if (!controller.signal.aborted) setLoading(false);
      });
    return () => controller.abort();
    // `load` is a new closure each render; `key` says when what it fetches changed.
  }, [key, round]);
  return { data, loading, reload: () => setRound((n) => n + 1), set: setData };
}
