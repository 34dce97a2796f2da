import type { ComponentChildren } from 'preact';
import { useEffect, useRef } from 'preact/hooks';

/**
 * The view's <h1>. After an in-page navigation it takes the focus, so a screen reader reads
 * where the user landed (not on the first load: the login form's Tab order starts fresh).
 */
export function PageHeading({ children, visit }: { children: ComponentChildren; visit: number }) {
  const heading = useRef<HTMLHeadingElement>(null);
  useEffect(() => {
    if (visit > 0) heading.current?.focus();
  }, [visit]);
  return (
    <h1 ref={heading} tabIndex={-1}>
      {children}
    </h1>
  );
}

/** A table that scrolls sideways on a narrow screen; focusable so keyboards can scroll it. */
export function TableScroll({ label, children }: { label: string; children: ComponentChildren }) {
  return (
    <div class="table-scroll" tabIndex={0} role="region" aria-label={label}>
      {children}
    </div>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p class="muted" role="status">
      Loading {what}…
    </p>
  );
}
