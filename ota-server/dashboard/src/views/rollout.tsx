import { useEffect, useRef, useState } from 'preact/hooks';
import { api } from '../api.js';
import type { RolloutAction, RolloutView } from '../api-types.js';
import { ConfirmDialog, type ConfirmRequest } from '../components/confirm-dialog.js';
import { GuardFields, guardFromForm } from '../components/guard-fields.js';
import { Loading, PageHeading } from '../components/page.js';
import { ProgressChart } from '../components/progress-chart.js';
import { useReportError } from '../errors.js';
import { ROLLOUT_STATE_LABELS, failureRate, formatDateTime, formatPercent } from '../format.js';
import { useRolloutEvents } from '../live.js';
import { Link, type Location } from '../router.js';
import { useFetch } from '../use-fetch.js';

/** Samples are fetched again at most this often when `rollout` events come quickly. */
const SAMPLES_REFRESH_MS = 2000;

/** One roll-out: its counts, the auto-pause reason, its actions and its progress chart. */
export function RolloutDetailView({ location, id }: { location: Location; id: string }) {
  const report = useReportError();
  const detail = useFetch((signal) => api.rollout(id, signal), id);
  const [confirm, setConfirm] = useState<ConfirmRequest | null>(null);

  // A change event replaces the view at once; the samples follow, throttled.
  const refresh = useRef<number | undefined>(undefined);
  useEffect(() => () => window.clearTimeout(refresh.current), []);
  useRolloutEvents((changed) => {
    if (changed.id !== id || !detail.data) return;
    detail.set({ ...detail.data, rollout: changed });
    if (refresh.current === undefined) {
      refresh.current = window.setTimeout(() => {
        refresh.current = undefined;
        detail.reload();
      }, SAMPLES_REFRESH_MS);
    }
  });

  if (!detail.data) {
    return (
      <>
        <PageHeading visit={location.visit}>Roll-out</PageHeading>
        {detail.loading && <Loading what="the roll-out" />}
      </>
    );
  }
  const { rollout, samples } = detail.data;

  const act = (action: RolloutAction, percent?: number) => async () => {
    try {
      const answer = await api.changeRollout(rollout.id, action, percent);
      detail.set({ rollout: answer.rollout, samples });
      detail.reload();
    } catch (error) {
      report(error);
    }
  };
  const ask = (action: RolloutAction, percent?: number) => {
    const what = `${rollout.board} ${rollout.version}`;
    const requests: Record<RolloutAction, Omit<ConfirmRequest, 'action'>> = {
      widen: {
        title: `Widen to ${percent}%?`,
        message: `The roll-out of ${what} goes from ${rollout.percent}% to ${percent}% of the board's devices${percent === 100 ? ' and becomes the board’s release' : ''}.`,
        confirmLabel: `Widen to ${percent}%`,
      },
      pause: {
        title: 'Pause the roll-out?',
        message: `No further device starts updating to ${what}; devices already on it stay.`,
        confirmLabel: 'Pause',
      },
      resume: {
        title: 'Resume the roll-out?',
        message: `Devices in its ${rollout.percent}% start updating to ${what} again.`,
        confirmLabel: 'Resume',
      },
      cancel: {
        title: 'Cancel the roll-out?',
        message: `Devices go back to the release before ${what}. This cannot be undone.`,
        confirmLabel: 'Cancel roll-out',
        danger: true,
      },
    };
    setConfirm({ ...requests[action], action: act(action, percent) });
  };

  return (
    <>
      <p class="breadcrumb">
        <Link href="/rollouts">Roll-outs</Link> /
      </p>
      <PageHeading visit={location.visit}>
        Roll-out {rollout.board} {rollout.version}
      </PageHeading>
      <p>
        <span class={`badge state-${rollout.state}`} data-rollout-state>
          {ROLLOUT_STATE_LABELS[rollout.state]}
        </span>{' '}
        at <strong data-rollout-percent>{rollout.percent}%</strong> of the board’s devices · started{' '}
        {formatDateTime(rollout.createdAt)} · changed {formatDateTime(rollout.updatedAt)}
      </p>
      {rollout.state === 'paused' && (
        <p class="paused-reason" role="status" data-paused-reason>
          Paused{rollout.pausedReason ? `: ${rollout.pausedReason}` : ' by an operator'}
        </p>
      )}

      <RolloutCounts rollout={rollout} />
      <RolloutActions rollout={rollout} onAsk={ask} />

      <section aria-labelledby="progress">
        <h2 id="progress">Progress</h2>
        <ProgressChart samples={samples} />
      </section>

      <ThresholdForm
        rollout={rollout}
        onSaved={(changed) => detail.set({ rollout: changed, samples })}
      />
      <ConfirmDialog request={confirm} onDone={() => setConfirm(null)} />
    </>
  );
}

function RolloutCounts({ rollout }: { rollout: RolloutView }) {
  const { counts } = rollout;
  const { bad, attempted } = failureRate(counts);
  const entries: [string, string, number][] = [
    ['targeted', 'Targeted', counts.targeted],
    ['updated', 'Updated', counts.updated],
    ['updating', 'Updating', counts.updating],
    ['failed', 'Failed', counts.failed],
    ['rolledBack', 'Rolled back', counts.rolledBack],
    ['pending', 'Pending', counts.pending],
  ];
  return (
    <section aria-labelledby="counts">
      <h2 id="counts">Devices</h2>
      <dl class="cards">
        {entries.map(([key, label, value]) => (
          <div key={key} class={`card card-${key}`}>
            <dt>{label}</dt>
            <dd data-count={key}>{value}</dd>
          </div>
        ))}
        <div class="card">
          <dt>Failure rate</dt>
          <dd>
            {formatPercent(bad, attempted)}{' '}
            <span class="muted">
              ({bad} of {attempted}; pauses at {rollout.failureThresholdPercent}% once{' '}
              {rollout.minDevicesForThreshold} tried)
            </span>
          </dd>
        </div>
      </dl>
    </section>
  );
}

function RolloutActions({
  rollout,
  onAsk,
}: {
  rollout: RolloutView;
  onAsk: (action: RolloutAction, percent?: number) => void;
}) {
  const [percent, setPercent] = useState(String(Math.min(100, Math.max(rollout.percent, 50))));
  const active = rollout.state === 'active';
  return (
    <section aria-labelledby="actions">
      <h2 id="actions">Actions</h2>
      <form
        class="inline-form"
        onSubmit={(event) => {
          event.preventDefault();
          onAsk('widen', Number(percent));
        }}
      >
        <label for="widen-percent">Widen to (%)</label>
        <input
          id="widen-percent"
          type="number"
          min={rollout.percent + 1}
          max={100}
          value={percent}
          disabled={!active}
          required
          onInput={(event) => setPercent(event.currentTarget.value)}
        />
        <button type="submit" disabled={!active}>
          Widen…
        </button>
      </form>
      <div class="actions">
        <button type="button" disabled={!active} onClick={() => onAsk('pause')}>
          Pause…
        </button>
        <button type="button" disabled={rollout.state !== 'paused'} onClick={() => onAsk('resume')}>
          Resume…
        </button>
        <button
          type="button"
          class="danger"
          disabled={rollout.state === 'cancelled'}
          onClick={() => onAsk('cancel')}
        >
          Cancel roll-out…
        </button>
      </div>
    </section>
  );
}

function ThresholdForm({
  rollout,
  onSaved,
}: {
  rollout: RolloutView;
  onSaved: (rollout: RolloutView) => void;
}) {
  const report = useReportError();
  const [saved, setSaved] = useState(false);
  const submit = async (event: SubmitEvent) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget as HTMLFormElement);
    setSaved(false);
    try {
      const answer = await api.setThreshold(rollout.id, guardFromForm(form));
      onSaved(answer.rollout);
      setSaved(true);
    } catch (error) {
      report(error);
    }
  };
  const finished = rollout.state === 'cancelled' || rollout.state === 'completed';
  return (
    <section aria-labelledby="threshold">
      <h2 id="threshold">Automatic pause</h2>
      <form class="grid-form" onSubmit={(event) => void submit(event)}>
        <GuardFields
          ids={{ threshold: 'threshold-percent', minDevices: 'threshold-min' }}
          values={rollout}
          disabled={finished}
        />
        <button type="submit" disabled={finished}>
          Save threshold
        </button>
        <p role="status" class="muted">
          {saved ? 'Saved.' : ''}
        </p>
      </form>
    </section>
  );
}
