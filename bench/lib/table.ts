/** A cell: a number (formatted by its column, kept raw for ratios), text, or nothing measured. */
export type Cell = number | string | undefined;

export interface Column {
  header: string;
  /** How a number shows; two decimals when absent. */
  format?: (value: number) => string;
}

export interface Table {
  title: string;
  columns: readonly Column[];
  /** The first cell of each row names it. */
  rows: ReadonlyArray<readonly [string, ...Cell[]]>;
  /** Each adds a last column: every row's value in `column` divided by the baseline row's. */
  ratios?: ReadonlyArray<{ column: string; baseline: string; header?: string }>;
}

export const formatters = {
  integer: (value: number) => Math.round(value).toLocaleString('en-US'),
  fixed: (digits: number) => (value: number) => value.toFixed(digits),
  ratio: (value: number) => `${value.toFixed(2)}x`,
};

/** Renders a table as aligned text: names left, everything else right. */
export function renderTable(table: Table): string {
  const headers = ['', ...table.columns.map((column) => column.header)];
  const body = table.rows.map((row) =>
    row.map((cell, index) =>
      index === 0 ? String(cell) : formatCell(cell, table.columns[index - 1]),
    ),
  );
  for (const { column, baseline, header } of table.ratios ?? []) {
    const index = table.columns.findIndex((candidate) => candidate.header === column) + 1;
    if (index === 0) throw new Error(`no column ${column} for a ratio`);
    const base = table.rows.find((row) => row[0] === baseline)?.[index];
    headers.push(header ?? `${column} / ${baseline}`);
    table.rows.forEach((row, rowIndex) => {
      const value = row[index];
      const ratio =
        typeof value === 'number' && typeof base === 'number' && base !== 0
          ? formatters.ratio(value / base)
          : '–';
      body[rowIndex]!.push(ratio);
    });
  }
  const lines = [headers, ...body];
  const widths = headers.map((_, index) =>
    Math.max(...lines.map((line) => (line[index] ?? '').length)),
  );
  const render = (line: string[]) =>
    line
      .map((cell, index) =>
        index === 0 ? cell.padEnd(widths[index]!) : cell.padStart(widths[index]!),
      )
      .join('  ')
      .trimEnd();
  const rule = '-'.repeat(widths.reduce((sum, width) => sum + width, 0) + 2 * (widths.length - 1));
  return [table.title, render(headers), rule, ...body.map(render)].join('\n');
}

export function printTable(table: Table): void {
  process.stdout.write(`${renderTable(table)}\n\n`);
}

function formatCell(cell: Cell, column: Column | undefined): string {
  if (cell === undefined) return '–';
  if (typeof cell === 'string') return cell;
  return (column?.format ?? formatters.fixed(2))(cell);
}
