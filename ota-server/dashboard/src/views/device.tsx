import { api } from '../api.js';
import { Loading, PageHeading, TableScroll } from '../components/page.js';
import { formatAgo, formatDateTime } from '../format.js';
import { Link, type Location } from '../router.js';
import { useFetch } from '../use-fetch.js';
import { CategoryBadge } from './devices.js';

/** One device: its facts, its last failure, its update timeline and its check-ins. */
export function DeviceView({ location, deviceId }: { location: Location; deviceId: string }) {
  const detail = useFetch((signal) => api.device(deviceId, signal), deviceId);
  const data = detail.data;

  return (
    <>
      <p class="breadcrumb">
        <Link href="/devices">Devices</Link> /
      </p>
      <PageHeading visit={location.visit}>Device {deviceId}</PageHeading>
      {!data ? (
        detail.loading ? (
          <Loading what="the device" />
        ) : null
      ) : (
        <>
          {data.lastFailure && (
            <section class="failure" aria-labelledby="last-failure">
              <h2 id="last-failure">Last failure</h2>
              <p class="failure-reason" data-failure-reason>
                {data.lastFailure.reason ?? 'no reason reported'}
              </p>
              <p class="muted">
                Updating to {data.lastFailure.targetVersion ?? 'an unknown version'},{' '}
                <time dateTime={data.lastFailure.at}>{formatDateTime(data.lastFailure.at)}</time>
              </p>
            </section>
          )}

          <section aria-labelledby="facts">
            <h2 id="facts">Facts</h2>
            <dl class="facts">
              <dt>State</dt>
              <dd>
                <CategoryBadge category={data.device.category} />
              </dd>
              <dt>Board</dt>
              <dd>{data.device.board}</dd>
              <dt>Version</dt>
              <dd>{data.device.version ?? '—'}</dd>
              <dt>Update</dt>
              <dd>
                {data.device.updateState ?? '—'}
                {data.device.targetVersion && ` → ${data.device.targetVersion}`}
              </dd>
              <dt>Slot</dt>
              <dd>{data.device.slot ?? '—'}</dd>
              <dt>Firmware hash</dt>
              <dd>
                <code class="hash">{data.device.firmwareHash ?? '—'}</code>
              </dd>
              <dt>App</dt>
              <dd>
                {data.device.app
                  ? `${data.device.app.version ?? 'none'} (${data.device.app.state})`
                  : '—'}
              </dd>
              <dt>Enrolled</dt>
              <dd>{formatDateTime(data.device.enrolledAt)}</dd>
              <dt>Last seen</dt>
              <dd>
                {data.device.lastSeen
                  ? `${formatDateTime(data.device.lastSeen)} (${formatAgo(data.device.lastSeen)})`
                  : 'never'}
              </dd>
            </dl>
          </section>

          <section aria-labelledby="timeline">
            <h2 id="timeline">Update timeline</h2>
            {data.timeline.length === 0 ? (
              <p class="muted">No update state changes recorded.</p>
            ) : (
              <ol class="timeline">
                {data.timeline.map((entry) => (
                  <li key={entry.at} class={`timeline-${entry.state}`}>
                    <time dateTime={entry.at}>{formatDateTime(entry.at)}</time>{' '}
                    <strong>{entry.state}</strong> on {entry.version}
                    {entry.targetVersion && ` → ${entry.targetVersion}`}
                    {entry.reason && <span class="reason">: {entry.reason}</span>}
                  </li>
                ))}
              </ol>
            )}
          </section>

          <section aria-labelledby="check-ins">
            <h2 id="check-ins">Check-ins (newest first)</h2>
            <TableScroll label="Check-ins">
              <table>
                <thead>
                  <tr>
                    <th scope="col">Time</th>
                    <th scope="col">Version</th>
                    <th scope="col">Slot</th>
                    <th scope="col">Update</th>
                    <th scope="col">Progress</th>
                    <th scope="col">Told to run</th>
                    <th scope="col">Reason</th>
                  </tr>
                </thead>
                <tbody>
                  {data.checkIns.map((checkIn) => (
                    <tr key={checkIn.at}>
                      <th scope="row">
                        <time dateTime={checkIn.at}>{formatDateTime(checkIn.at)}</time>
                      </th>
                      <td>{checkIn.version}</td>
                      <td>{checkIn.slot}</td>
                      <td>
                        {checkIn.updateState}
                        {checkIn.targetVersion && ` → ${checkIn.targetVersion}`}
                      </td>
                      <td>
                        {checkIn.progress === null ? '' : `${Math.round(checkIn.progress * 100)}%`}
                      </td>
                      <td>{checkIn.desiredVersion ?? '—'}</td>
                      <td class="reason">{checkIn.reason ?? ''}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </TableScroll>
          </section>
        </>
      )}
    </>
  );
}
