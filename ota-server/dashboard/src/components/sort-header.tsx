import type { ComponentChildren } from 'preact';

export type Order = 'asc' | 'desc';

/** A column header that sorts: a real button inside, aria-sort on the header cell. */
export function SortHeader({
  column,
  sort,
  order,
  onSort,
  children,
}: {
  column: string;
  sort: string;
  order: Order;
  onSort: (column: string, order: Order) => void;
  children: ComponentChildren;
}) {
  const active = column === sort;
  const next: Order = active && order === 'asc' ? 'desc' : 'asc';
  return (
    <th scope="col" aria-sort={active ? (order === 'asc' ? 'ascending' : 'descending') : undefined}>
      <button type="button" class="sort" onClick={() => onSort(column, next)}>
        {children}
        <span class="sort-mark" aria-hidden="true">
          {active ? (order === 'asc' ? '▲' : '▼') : '↕'}
        </span>
        <span class="visually-hidden">, sort {next === 'asc' ? 'ascending' : 'descending'}</span>
      </button>
    </th>
  );
}
