import { api } from '../api.js';
import { Loading, PageHeading, TableScroll } from '../components/page.js';
import { formatBytes, formatDateTime, formatPercent } from '../format.js';
import type { Location } from '../router.js';
import { useFetch } from '../use-fetch.js';

/** What `publish` wrote: each board's versions, the full image and each delta with its size. */
export function ReleasesView({ location }: { location: Location }) {
  const releases = useFetch((signal) => api.releases(signal), 'releases');

  return (
    <>
      <PageHeading visit={location.visit}>Releases</PageHeading>
      {!releases.data ? (
        <Loading what="releases" />
      ) : releases.data.boards.length === 0 ? (
        <p>Nothing is published yet (ota-server publish).</p>
      ) : (
        releases.data.boards.map(({ board, releases: list }) => (
          <section key={board} aria-labelledby={`board-${board}`}>
            <h2 id={`board-${board}`}>{board}</h2>
            <TableScroll label={`Releases of ${board}`}>
              <table>
                <thead>
                  <tr>
                    <th scope="col">Version</th>
                    <th scope="col">Published</th>
                    <th scope="col" class="number">
                      Full image
                    </th>
                    <th scope="col">Deltas</th>
                  </tr>
                </thead>
                <tbody>
                  {list.map((release) => (
                    <tr key={release.version}>
                      <th scope="row">{release.version}</th>
                      <td>{formatDateTime(release.publishedAt)}</td>
                      <td class="number">
                        <Bytes count={release.imageBytes} />
                      </td>
                      <td>
                        {release.deltas.length === 0 ? (
                          <span class="muted">none</span>
                        ) : (
                          <ul class="plain">
                            {release.deltas.map((delta) => (
                              <li key={delta.target}>
                                from {delta.fromVersion}: <Bytes count={delta.bytes} />{' '}
                                <span class="muted">
                                  ({formatPercent(delta.bytes, release.imageBytes)} of the image)
                                </span>
                              </li>
                            ))}
                          </ul>
                        )}
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </TableScroll>
          </section>
        ))
      )}
    </>
  );
}

/** A size in binary units, the exact byte count in its title. */
function Bytes({ count }: { count: number }) {
  return <span title={`${count} bytes`}>{formatBytes(count)}</span>;
}
