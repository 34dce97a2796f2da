import type { RolloutView } from '../api-types.js';
import { ROLLOUT_STATE_LABELS, failureRate, formatPercent } from '../format.js';
import { Link } from '../router.js';

/** One line for a roll-out: what, how far, how it goes; links to its page. */
export function RolloutSummary({ rollout }: { rollout: RolloutView }) {
  const { counts } = rollout;
  const { bad, attempted } = failureRate(counts);
  return (
    <div class="rollout-summary" data-rollout={rollout.id}>
      <Link href={`/rollouts/${encodeURIComponent(rollout.id)}`}>
        {rollout.board} {rollout.version}
      </Link>{' '}
      <span class={`badge state-${rollout.state}`}>{ROLLOUT_STATE_LABELS[rollout.state]}</span> at{' '}
      {rollout.percent}% ·{' '}
      <span data-counts>
        {counts.updated} of {counts.targeted} updated, {counts.updating} updating, {counts.failed}{' '}
        failed, {counts.rolledBack} rolled back
      </span>{' '}
      · failure rate {formatPercent(bad, attempted)} (pauses at {rollout.failureThresholdPercent}%)
      {rollout.pausedReason && <p class="paused-reason">Paused: {rollout.pausedReason}</p>}
    </div>
  );
}
