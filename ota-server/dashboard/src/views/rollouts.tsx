import { useState } from 'preact/hooks';
import { api } from '../api.js';
import type { RolloutView } from '../api-types.js';
import { NumberField, SelectField } from '../components/form-fields.js';
import { GuardFields, guardFromForm } from '../components/guard-fields.js';
import { Loading, PageHeading, TableScroll } from '../components/page.js';
import { useReportError } from '../errors.js';
import { ROLLOUT_STATE_LABELS, failureRate, formatDateTime, formatPercent } from '../format.js';
import { useRolloutEvents } from '../live.js';
import { Link, navigate, type Location } from '../router.js';
import { useFetch } from '../use-fetch.js';

/** All roll-outs, newest first, kept current by `rollout` events; and the form to start one. */
export function RolloutsView({ location }: { location: Location }) {
  const list = useFetch((signal) => api.rollouts(signal), 'rollouts');
  useRolloutEvents((changed) => {
    const rollouts = list.data?.rollouts ?? [];
    if (rollouts.some((rollout) => rollout.id === changed.id)) {
      list.set({
        rollouts: rollouts.map((rollout) => (rollout.id === changed.id ? changed : rollout)),
      });
    } else {
      list.reload();
    }
  });

  return (
    <>
      <PageHeading visit={location.visit}>Roll-outs</PageHeading>
      <StartRollout />
      <section aria-labelledby="all-rollouts">
        <h2 id="all-rollouts">All roll-outs</h2>
        {!list.data ? (
          <Loading what="roll-outs" />
        ) : list.data.rollouts.length === 0 ? (
          <p class="muted">No roll-out yet.</p>
        ) : (
          <RolloutTable rollouts={list.data.rollouts} />
        )}
      </section>
    </>
  );
}

function RolloutTable({ rollouts }: { rollouts: RolloutView[] }) {
  return (
    <TableScroll label="Roll-outs">
      <table>
        <thead>
          <tr>
            <th scope="col">Release</th>
            <th scope="col">State</th>
            <th scope="col" class="number">
              Percent
            </th>
            <th scope="col" class="number">
              Updated
            </th>
            <th scope="col" class="number">
              Failed
            </th>
            <th scope="col" class="number">
              Failure rate
            </th>
            <th scope="col">Started</th>
          </tr>
        </thead>
        <tbody>
          {rollouts.map((rollout) => {
            const { bad, attempted } = failureRate(rollout.counts);
            return (
              <tr key={rollout.id} data-rollout={rollout.id}>
                <th scope="row">
                  <Link href={`/rollouts/${encodeURIComponent(rollout.id)}`}>
                    {rollout.board} {rollout.version}
                  </Link>
                </th>
                <td>
                  <span class={`badge state-${rollout.state}`}>
                    {ROLLOUT_STATE_LABELS[rollout.state]}
                  </span>
                </td>
                <td class="number">{rollout.percent}%</td>
                <td class="number">
                  {rollout.counts.updated} of {rollout.counts.targeted}
                </td>
                <td class="number">{rollout.counts.failed + rollout.counts.rolledBack}</td>
                <td class="number">
                  {formatPercent(bad, attempted)} / {rollout.failureThresholdPercent}%
                </td>
                <td>{formatDateTime(rollout.createdAt)}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </TableScroll>
  );
}

/** Board and version come from the published releases: only those can roll out. */
function StartRollout() {
  const report = useReportError();
  const releases = useFetch((signal) => api.releases(signal), 'releases');
  const [board, setBoard] = useState('');
  const [version, setVersion] = useState('');
  const [busy, setBusy] = useState(false);
  const boards = releases.data?.boards ?? [];
  const chosenBoard = board || boards[0]?.board || '';
  const versions = boards.find((entry) => entry.board === chosenBoard)?.releases ?? [];
  const chosenVersion = version || versions[0]?.version || '';

  const submit = async (event: SubmitEvent) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget as HTMLFormElement);
    setBusy(true);
    try {
      const { rollout } = await api.startRollout({
        board: chosenBoard,
        version: chosenVersion,
        percent: Number(form.get('percent')),
        ...guardFromForm(form),
      });
      navigate(`/rollouts/${encodeURIComponent(rollout.id)}`);
    } catch (error) {
      report(error);
    } finally {
      setBusy(false);
    }
  };

  return (
    <section aria-labelledby="start-rollout">
      <h2 id="start-rollout">Start a roll-out</h2>
      {!releases.data ? (
        <Loading what="releases" />
      ) : boards.length === 0 ? (
        <p>Publish a release first (ota-server publish).</p>
      ) : (
        <form class="grid-form" onSubmit={(event) => void submit(event)}>
          <SelectField
            id="rollout-board"
            label="Board"
            value={chosenBoard}
            options={boards.map((entry) => entry.board)}
            onChange={(value) => {
              setBoard(value);
              setVersion('');
            }}
          />
          <SelectField
            id="rollout-version"
            label="Version"
            value={chosenVersion}
            options={versions.map((release) => release.version)}
            onChange={setVersion}
          />
          <NumberField
            id="rollout-percent"
            label="Devices (%)"
            name="percent"
            min={1}
            max={100}
            defaultValue="10"
          />
          <GuardFields
            ids={{ threshold: 'rollout-threshold', minDevices: 'rollout-min-devices' }}
            values={{ failureThresholdPercent: 10, minDevicesForThreshold: 10 }}
          />
          <button type="submit" class="primary" disabled={busy || !chosenVersion}>
            {busy ? 'Starting…' : 'Start roll-out'}
          </button>
        </form>
      )}
    </section>
  );
}
