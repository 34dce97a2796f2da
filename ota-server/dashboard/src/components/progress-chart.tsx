import type { RolloutSampleJson } from '../api-types.js';
import { formatAxisTime, formatDateTime, formatPercent } from '../format.js';

const WIDTH = 640;
const HEIGHT = 240;
const MARGIN = { left: 44, right: 16, top: 12, bottom: 30 };

type SeriesKey = 'targeted' | 'updated' | 'updating' | 'failed' | 'rolledBack';

/** Each line: its sample field, its legend, and its CSS class (colour and dash live in app.css). */
const SERIES: { key: SeriesKey; label: string }[] = [
  { key: 'targeted', label: 'Targeted' },
  { key: 'updated', label: 'Updated' },
  { key: 'updating', label: 'Updating' },
  { key: 'failed', label: 'Failed' },
  { key: 'rolledBack', label: 'Rolled back' },
];

/** "nice" upper bound for the y axis: 1, 2 or 5 times a power of ten. */
function niceMax(value: number): number {
  if (value <= 5) return 5;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power;
  return value;
}

/**
 * A roll-out's progress over time, drawn as SVG geometry (attributes, never style: the CSP
 * forbids inline styles), with the same numbers in a table for screen readers and keyboards.
 */
export function ProgressChart({ samples }: { samples: RolloutSampleJson[] }) {
  if (samples.length === 0) {
    return <p class="muted">No samples yet: the server takes one at each change.</p>;
  }
  const times = samples.map((sample) => new Date(sample.at).getTime());
  const first = Math.min(...times);
  const last = Math.max(...times);
  const top = niceMax(Math.max(...samples.map((sample) => sample.targeted), 1));
  const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
  const plotHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
  const x = (time: number) =>
    MARGIN.left + (last === first ? plotWidth / 2 : ((time - first) / (last - first)) * plotWidth);
  const y = (value: number) => MARGIN.top + plotHeight - (value / top) * plotHeight;
  const latest = samples[samples.length - 1]!;
  const summary =
    `Latest sample ${formatDateTime(latest.at)}: ${latest.updated} of ${latest.targeted} ` +
    `targeted devices updated, ${latest.updating} updating, ${latest.failed} failed, ` +
    `${latest.rolledBack} rolled back.`;
  const ticks = [0, top / 2, top];

  return (
    <figure class="chart">
      <svg
        viewBox={`0 0 ${WIDTH} ${HEIGHT}`}
        role="img"
        aria-label={`Roll-out progress over time. ${summary}`}
        preserveAspectRatio="xMidYMid meet"
      >
        {ticks.map((tick) => (
          <g key={tick} class="tick">
            <line x1={MARGIN.left} x2={WIDTH - MARGIN.right} y1={y(tick)} y2={y(tick)} />
            <text x={MARGIN.left - 6} y={y(tick) + 4} text-anchor="end">
              {tick}
            </text>
          </g>
        ))}
        <text x={MARGIN.left} y={HEIGHT - 8} class="axis-label">
          {formatAxisTime(first, last - first)}
        </text>
        <text x={WIDTH - MARGIN.right} y={HEIGHT - 8} text-anchor="end" class="axis-label">
          {formatAxisTime(last, last - first)}
        </text>
        {SERIES.map(({ key }) => {
          const points = samples.map((sample, i) => `${x(times[i]!)},${y(sample[key])}`);
          return samples.length === 1 ? (
            <circle
              key={key}
              class={`series series-${key}`}
              cx={x(first)}
              cy={y(latest[key])}
              r={4}
            />
          ) : (
            <polyline key={key} class={`series series-${key}`} points={points.join(' ')} />
          );
        })}
      </svg>
      <figcaption>
        <ul class="legend" aria-hidden="true">
          {SERIES.map(({ key, label }) => (
            <li key={key}>
              <span class={`swatch series-${key}`} />
              {label}
            </li>
          ))}
        </ul>
        <p>{summary}</p>
      </figcaption>
      <details>
        <summary>Show the samples as a table</summary>
        <div class="table-scroll" tabIndex={0} role="region" aria-label="Samples">
          <table>
            <caption class="visually-hidden">Roll-out samples, oldest first</caption>
            <thead>
              <tr>
                <th scope="col">Time</th>
                <th scope="col">Percent</th>
                {SERIES.map(({ key, label }) => (
                  <th scope="col" key={key}>
                    {label}
                  </th>
                ))}
                <th scope="col">Failure rate</th>
              </tr>
            </thead>
            <tbody>
              {samples.map((sample) => (
                <tr key={sample.at}>
                  <th scope="row">{formatDateTime(sample.at)}</th>
                  <td>{sample.percent}%</td>
                  {SERIES.map(({ key }) => (
                    <td key={key}>{sample[key]}</td>
                  ))}
                  <td>
                    {formatPercent(
                      sample.failed + sample.rolledBack,
                      sample.updated + sample.failed + sample.rolledBack,
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </details>
    </figure>
  );
}
