import { useContext } from 'preact/hooks';
import { api } from '../api.js';
import { CATEGORIES } from '../api-types.js';
import { Loading, PageHeading, TableScroll } from '../components/page.js';
import { RolloutSummary } from '../components/rollout-summary.js';
import { CATEGORY_LABELS, formatDateTime, formatPercent } from '../format.js';
import { LiveContext, newestOverview } from '../live.js';
import { Link, pathWithQuery, type Location } from '../router.js';
import { useFetch } from '../use-fetch.js';

/** Counts by state, board and version, kept current by the server's `overview` events. */
export function OverviewView({ location }: { location: Location }) {
  const live = useContext(LiveContext);
  const fetched = useFetch((signal) => api.overview(signal), 'overview');
  const overview = newestOverview(live.overview, fetched.data);

  return (
    <>
      <PageHeading visit={location.visit}>Fleet overview</PageHeading>
      {!overview ? (
        <Loading what="the overview" />
      ) : (
        <>
          <p class="muted">
            <span data-total>{overview.total}</span> devices · as of{' '}
            <time dateTime={overview.generatedAt}>{formatDateTime(overview.generatedAt)}</time>
          </p>
          <section aria-labelledby="by-state">
            <h2 id="by-state">By state</h2>
            <dl class="cards">
              {CATEGORIES.map((category) => (
                <div key={category} class={`card card-${category}`}>
                  <dt>{CATEGORY_LABELS[category]}</dt>
                  <dd data-category={category}>
                    <Link href={pathWithQuery('/devices', { category })}>
                      {overview.byState[category]}
                    </Link>
                  </dd>
                </div>
              ))}
            </dl>
          </section>

          <section aria-labelledby="rollouts-active">
            <h2 id="rollouts-active">Roll-outs in progress</h2>
            {overview.rollouts.length === 0 ? (
              <p class="muted">
                None. <Link href="/rollouts">Start one</Link>
              </p>
            ) : (
              <ul class="plain">
                {overview.rollouts.map((rollout) => (
                  <li key={rollout.id}>
                    <RolloutSummary rollout={rollout} />
                  </li>
                ))}
              </ul>
            )}
          </section>

          <div class="columns">
            <section aria-labelledby="by-board">
              <h2 id="by-board">By board</h2>
              <TableScroll label="Devices by board">
                <table>
                  <thead>
                    <tr>
                      <th scope="col">Board</th>
                      <th scope="col" class="number">
                        Devices
                      </th>
                    </tr>
                  </thead>
                  <tbody>
                    {overview.byBoard.map(({ board, count }) => (
                      <tr key={board}>
                        <th scope="row">
                          <Link href={pathWithQuery('/devices', { board })}>{board}</Link>
                        </th>
                        <td class="number">{count}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </TableScroll>
            </section>

            <section aria-labelledby="by-version">
              <h2 id="by-version">By release</h2>
              <TableScroll label="Devices by release">
                <table>
                  <thead>
                    <tr>
                      <th scope="col">Board</th>
                      <th scope="col">Version</th>
                      <th scope="col" class="number">
                        Devices
                      </th>
                      <th scope="col" class="number">
                        Share
                      </th>
                    </tr>
                  </thead>
                  <tbody>
                    {overview.byVersion.map(({ board, version, count }) => (
                      <tr key={`${board} ${version}`} data-version={`${board}/${version}`}>
                        <td>{board}</td>
                        <th scope="row">
                          <Link href={pathWithQuery('/devices', { board, version })}>
                            {version}
                          </Link>
                        </th>
                        <td class="number" data-count>
                          {count}
                        </td>
                        <td class="number">
                          {formatPercent(
                            count,
                            overview.byBoard.find((entry) => entry.board === board)?.count ?? 0,
                          )}
                        </td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </TableScroll>
            </section>
          </div>
        </>
      )}
    </>
  );
}
