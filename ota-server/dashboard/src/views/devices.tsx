import { useContext, useEffect, useRef, useState } from 'preact/hooks';
import { api } from '../api.js';
import { CATEGORIES, type DeviceCategory } from '../api-types.js';
import { Loading, PageHeading, TableScroll } from '../components/page.js';
import { SortHeader, type Order } from '../components/sort-header.js';
import { CATEGORY_LABELS, formatAgo, formatDateTime } from '../format.js';
import { LiveContext, newestOverview } from '../live.js';
import { Link, navigate, pathWithQuery, type Location } from '../router.js';
import { useFetch } from '../use-fetch.js';

const SORTABLE = ['deviceId', 'board', 'version', 'lastSeen', 'state'] as const;
const PAGE_SIZES = ['25', '50', '100', '200'];
const DEFAULT_PAGE_SIZE = '50';
const SEARCH_DELAY_MS = 300;

/** The table's state, all of it in the URL's query string (links and Back keep it). */
interface DeviceFilters {
  q: string;
  board: string;
  version: string;
  category: string;
  sort: string;
  order: Order;
  page: number;
  pageSize: string;
}

function filtersFrom(query: URLSearchParams): DeviceFilters {
  const sort = query.get('sort') ?? 'deviceId';
  const page = Number(query.get('page') ?? '1');
  const pageSize = query.get('pageSize') ?? DEFAULT_PAGE_SIZE;
  return {
    q: query.get('q') ?? '',
    board: query.get('board') ?? '',
    version: query.get('version') ?? '',
    category: query.get('category') ?? '',
    sort: (SORTABLE as readonly string[]).includes(sort) ? sort : 'deviceId',
    order: query.get('order') === 'desc' ? 'desc' : 'asc',
    page: Number.isInteger(page) && page >= 1 ? page : 1,
    pageSize: PAGE_SIZES.includes(pageSize) ? pageSize : DEFAULT_PAGE_SIZE,
  };
}

function toQuery(filters: DeviceFilters): Record<string, string | undefined> {
  return {
    q: filters.q,
    board: filters.board,
    version: filters.version,
    category: filters.category,
    sort: filters.sort === 'deviceId' ? undefined : filters.sort,
    order: filters.order === 'asc' ? undefined : filters.order,
    page: filters.page === 1 ? undefined : String(filters.page),
    pageSize: filters.pageSize === DEFAULT_PAGE_SIZE ? undefined : filters.pageSize,
  };
}

/** Search, filter, sort and pages, all done by the server (100,000 devices do not fit a page). */
export function DevicesView({ location }: { location: Location }) {
  const filters = filtersFrom(location.query);
  const apiQuery = {
    ...toQuery(filters),
    page: String(filters.page),
    pageSize: filters.pageSize,
  };
  const key = JSON.stringify(apiQuery);
  const page = useFetch((signal) => api.devices(apiQuery, signal), key);

  const live = useContext(LiveContext);
  const overviewFetch = useFetch((signal) => api.overview(signal), 'overview');
  const overview = newestOverview(live.overview, overviewFetch.data);
  const boards = overview?.byBoard.map((entry) => entry.board) ?? [];
  const versions = [
    ...new Set(
      (overview?.byVersion ?? [])
        .filter((entry) => !filters.board || entry.board === filters.board)
        .map((entry) => entry.version),
    ),
  ];

  const go = (change: Partial<DeviceFilters>, replace = false) =>
    navigate(pathWithQuery('/devices', toQuery({ ...filters, page: 1, ...change })), { replace });

  // The search box follows the URL (Back) and updates it a moment after typing stops.
  const [search, setSearch] = useState(filters.q);
  const typing = useRef<number | undefined>(undefined);
  useEffect(() => setSearch(filters.q), [filters.q]);
  useEffect(() => () => window.clearTimeout(typing.current), []);
  const onSearch = (value: string) => {
    setSearch(value);
    window.clearTimeout(typing.current);
    typing.current = window.setTimeout(() => go({ q: value.trim() }, true), SEARCH_DELAY_MS);
  };

  const pages = page.data ? Math.max(1, Math.ceil(page.data.total / page.data.pageSize)) : 1;
  const pageLink = (n: number) => pathWithQuery('/devices', toQuery({ ...filters, page: n }));

  return (
    <>
      <PageHeading visit={location.visit}>Devices</PageHeading>
      <form
        class="filters"
        role="search"
        onSubmit={(event) => {
          event.preventDefault();
          window.clearTimeout(typing.current);
          go({ q: search.trim() });
        }}
      >
        <div class="field">
          <label for="device-search">Device id contains</label>
          <input
            id="device-search"
            type="search"
            value={search}
            maxLength={128}
            onInput={(event) => onSearch(event.currentTarget.value)}
          />
        </div>
        <div class="field">
          <label for="filter-board">Board</label>
          <select
            id="filter-board"
            value={filters.board}
            onChange={(event) => go({ board: event.currentTarget.value, version: '' })}
          >
            <option value="">All boards</option>
            {withCurrent(boards, filters.board).map((board) => (
              <option key={board} value={board}>
                {board}
              </option>
            ))}
          </select>
        </div>
        <div class="field">
          <label for="filter-version">Version</label>
          <select
            id="filter-version"
            value={filters.version}
            onChange={(event) => go({ version: event.currentTarget.value })}
          >
            <option value="">All versions</option>
            {withCurrent(versions, filters.version).map((version) => (
              <option key={version} value={version}>
                {version}
              </option>
            ))}
          </select>
        </div>
        <div class="field">
          <label for="filter-category">State</label>
          <select
            id="filter-category"
            value={filters.category}
            onChange={(event) => go({ category: event.currentTarget.value })}
          >
            <option value="">All states</option>
            {CATEGORIES.map((category) => (
              <option key={category} value={category}>
                {CATEGORY_LABELS[category]}
              </option>
            ))}
          </select>
        </div>
        <button type="submit">Search</button>
      </form>

      {!page.data ? (
        <Loading what="devices" />
      ) : (
        <>
          <p class="muted" role="status">
            {page.data.total} devices{page.loading ? ' · updating…' : ''}
          </p>
          <TableScroll label="Devices">
            <table class="devices">
              <thead>
                <tr>
                  {(
                    [
                      ['deviceId', 'Device'],
                      ['board', 'Board'],
                      ['version', 'Version'],
                      ['state', 'State'],
                      ['lastSeen', 'Last seen'],
                    ] as const
                  ).map(([column, label]) => (
                    <SortHeader
                      key={column}
                      column={column}
                      sort={filters.sort}
                      order={filters.order}
                      onSort={(sort, order) => go({ sort, order, page: filters.page })}
                    >
                      {label}
                    </SortHeader>
                  ))}
                  <th scope="col">Failure reason</th>
                </tr>
              </thead>
              <tbody>
                {page.data.devices.map((device) => (
                  <tr key={device.deviceId}>
                    <th scope="row">
                      <Link href={`/devices/${encodeURIComponent(device.deviceId)}`}>
                        {device.deviceId}
                      </Link>
                    </th>
                    <td>{device.board}</td>
                    <td>{device.version ?? '—'}</td>
                    <td>
                      <CategoryBadge category={device.category} />
                      {device.updateState && device.updateState !== 'idle' && (
                        <span class="muted">
                          {' '}
                          {device.updateState}
                          {device.targetVersion && ` → ${device.targetVersion}`}
                        </span>
                      )}
                    </td>
                    <td>
                      {device.lastSeen ? (
                        <time dateTime={device.lastSeen} title={formatDateTime(device.lastSeen)}>
                          {formatAgo(device.lastSeen)}
                        </time>
                      ) : (
                        'never'
                      )}
                    </td>
                    <td class="reason">{device.reason ?? ''}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </TableScroll>
          {page.data.devices.length === 0 && <p>No device matches.</p>}
          <nav class="pagination" aria-label="Pages">
            {filters.page > 1 ? (
              <Link href={pageLink(filters.page - 1)}>Previous page</Link>
            ) : (
              <span aria-disabled="true" class="muted">
                Previous page
              </span>
            )}
            <span>
              Page {filters.page} of {pages}
            </span>
            {filters.page < pages ? (
              <Link href={pageLink(filters.page + 1)}>Next page</Link>
            ) : (
              <span aria-disabled="true" class="muted">
                Next page
              </span>
            )}
            <label for="page-size">Per page</label>
            <select
              id="page-size"
              value={filters.pageSize}
              onChange={(event) => go({ pageSize: event.currentTarget.value })}
            >
              {PAGE_SIZES.map((size) => (
                <option key={size} value={size}>
                  {size}
                </option>
              ))}
            </select>
          </nav>
        </>
      )}
    </>
  );
}

/** Options from the overview plus the URL's value, so a shared link's filter always shows. */
function withCurrent(options: string[], value: string): string[] {
  return value && !options.includes(value) ? [...options, value] : options;
}

export function CategoryBadge({ category }: { category: DeviceCategory }) {
  return <span class={`badge category-${category}`}>{CATEGORY_LABELS[category]}</span>;
}
