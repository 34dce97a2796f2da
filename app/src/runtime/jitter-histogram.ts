/**
 * Log-linear histogram of durations in microseconds (HdrHistogram's idea, small): 16 buckets
 * per power of two, so a quantile is within 1/16 of the true value, in 1 KiB of counts, at
 * any run length. Quantiles answer a bucket's upper edge: never better than the truth.
 */
const SUB_BUCKETS = 16;
const OCTAVES = 32;

export interface JitterSummary {
  count: number;
  p50Seconds: number;
  p99Seconds: number;
  maxSeconds: number;
}

export class JitterHistogram {
  readonly #counts = new Float64Array(SUB_BUCKETS * OCTAVES + SUB_BUCKETS);
  #count = 0;
  #maxMicros = 0;

  /** Records one deviation from a deadline, in milliseconds (its sign is dropped). */
  recordMs(deviationMs: number): void {
    const micros = Math.abs(deviationMs) * 1000;
    this.#counts[bucketOf(micros)]!++;
    this.#count++;
    if (micros > this.#maxMicros) this.#maxMicros = micros;
  }

  get count(): number {
    return this.#count;
  }

  /** The q-quantile (0..1) in microseconds. */
  quantileMicros(q: number): number {
    if (this.#count === 0) return 0;
    const rank = Math.max(1, Math.ceil(q * this.#count));
    let seen = 0;
    for (let bucket = 0; bucket < this.#counts.length; bucket++) {
      seen += this.#counts[bucket]!;
      if (seen >= rank) return Math.min(upperEdge(bucket), this.#maxMicros);
    }
    return this.#maxMicros;
  }

  summary(): JitterSummary {
    return {
      count: this.#count,
      p50Seconds: this.quantileMicros(0.5) / 1e6,
      p99Seconds: this.quantileMicros(0.99) / 1e6,
      maxSeconds: this.#maxMicros / 1e6,
    };
  }
}

/** Below 16 µs, one bucket per microsecond; above, 16 per octave. */
function bucketOf(micros: number): number {
  const value = Math.floor(micros);
  if (value < SUB_BUCKETS) return value;
  const octave = Math.min(OCTAVES - 1, Math.floor(Math.log2(value)) - 4);
  const sub = Math.min(SUB_BUCKETS - 1, Math.floor(value / 2 ** octave) - SUB_BUCKETS);
  return SUB_BUCKETS + octave * SUB_BUCKETS + sub;
}

function upperEdge(bucket: number): number {
  if (bucket < SUB_BUCKETS) return bucket + 1;
  const octave = Math.floor((bucket - SUB_BUCKETS) / SUB_BUCKETS);
  const sub = (bucket - SUB_BUCKETS) % SUB_BUCKETS;
  return (SUB_BUCKETS + sub + 1) * 2 ** octave;
}
