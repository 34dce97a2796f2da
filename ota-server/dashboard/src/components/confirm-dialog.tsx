import { useEffect, useRef, useState } from 'preact/hooks';

export interface ConfirmRequest {
  title: string;
  message: string;
  confirmLabel: string;
  /** Styles the confirm button as destructive (cancelling a roll-out). */
  danger?: boolean;
  /** Runs on confirm; the dialog stays open (buttons disabled) until it settles. */
  action: () => Promise<void>;
}

/**
 * A modal <dialog>: showModal() keeps focus inside, Escape cancels, and the browser gives
 * focus back to the button that opened it. The safe choice (Go back) has the focus first.
 */
export function ConfirmDialog({
  request,
  onDone,
}: {
  request: ConfirmRequest | null;
  onDone: () => void;
}) {
  const dialog = useRef<HTMLDialogElement>(null);
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    const element = dialog.current;
    if (!element) return;
    if (request && !element.open) element.showModal();
    if (!request && element.open) element.close();
  }, [request]);

  const confirm = async () => {
    if (!request) return;
    setBusy(true);
    try {
      await request.action();
    } finally {
      setBusy(false);
      onDone();
    }
  };

  return (
    <dialog
      ref={dialog}
      class="confirm"
      aria-labelledby="confirm-title"
      aria-describedby="confirm-message"
      onClose={() => {
        if (request && !busy) onDone();
      }}
      onCancel={(event) => {
        if (busy) event.preventDefault();
      }}
    >
      {request && (
        <>
          <h2 id="confirm-title">{request.title}</h2>
          <p id="confirm-message">{request.message}</p>
          <div class="actions">
            <button type="button" autofocus disabled={busy} onClick={onDone}>
              Go back
            </button>
            <button
              type="button"
              class={request.danger ? 'danger' : 'primary'}
              disabled={busy}
              onClick={() => void confirm()}
            >
              {busy ? 'Working…' : request.confirmLabel}
            </button>
          </div>
        </>
      )}
    </dialog>
  );
}
