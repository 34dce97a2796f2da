import type { ComponentChildren } from 'preact';
import { useEffect, useState } from 'preact/hooks';

/** Where the server serves the single page; app paths ('/devices') are below it. */
export const BASE = '/dashboard';
const NAVIGATED = 'dashboard:navigate';

export interface Location {
  /** The path below BASE, starting with '/'. */
  path: string;
  query: URLSearchParams;
  /** Increases with each navigation in this page (0: the page just loaded). */
  visit: number;
}

let visits = 0;

function current(): Location {
  const path = window.location.pathname.startsWith(BASE)
    ? window.location.pathname.slice(BASE.length) || '/'
    : '/';
  return { path, query: new URLSearchParams(window.location.search), visit: visits };
}

/** Goes to an app path with the History API; `replace` for changes not worth a Back step. */
export function navigate(to: string, options: { replace?: boolean } = {}): void {
  const url = `${BASE}${to}`;
  if (url === window.location.pathname + window.location.search) return;
  visits += 1;
  if (options.replace) window.history.replaceState(null, '', url);
  else window.history.pushState(null, '', url);
  window.dispatchEvent(new Event(NAVIGATED));
}

/** The current location, updated on navigate() and on Back/Forward. */
export function useLocation(): Location {
  const [location, setLocation] = useState(current);
  useEffect(() => {
    const update = () => setLocation(current());
    const back = () => {
      visits += 1;
      update();
    };
    window.addEventListener(NAVIGATED, update);
    window.addEventListener('popstate', back);
    return () => {
      window.removeEventListener(NAVIGATED, update);
      window.removeEventListener('popstate', back);
    };
  }, []);
  return location;
}

/** An app path with a query string, leaving out empty values. */
export function pathWithQuery(path: string, params: Record<string, string | undefined>): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) if (value) search.set(key, value);
  const text = search.toString();
  return text ? `${path}?${text}` : path;
}

interface LinkProps {
  href: string;
  children: ComponentChildren;
  class?: string;
  current?: boolean;
}

/** A real link (opens in a new tab, copies) that navigates in place on a plain click. */
export function Link({ href, children, class: className, current: isCurrent }: LinkProps) {
  const onClick = (event: MouseEvent) => {
    if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) {
      return;
    }
    event.preventDefault();
    navigate(href);
  };
  return (
    <a
      href={`${BASE}${href}`}
      class={className}
      onClick={onClick}
      aria-current={isCurrent ? 'page' : undefined}
    >
      {children}
    </a>
  );
}
