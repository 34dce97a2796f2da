import { COMPARE_BLOCK, commonPrefix, sameBytes } from './byte-ranges.js';
import {
  NEARBY_WINDOW,
  NearbyIndex,
  OldFileIndex,
  indexParametersFor,
  leavingWeight,
  rollHash,
  windowHash,
  type IndexParameters,
} from './old-file-index.js';

/**
 * One BSDIFF40 control triple with where its bytes come from: new[newStart, +diffLength) is
 * old[oldStart, +diffLength) plus the diff bytes, then extraLength bytes of new as they are;
 * then the old position moves by seek.
 */
export interface DeltaSegment {
  newStart: number;
  oldStart: number;
  diffLength: number;
  extraLength: number;
  seek: number;
}

export interface MatchProgress {
  phase: 'index' | 'match';
  bytesDone: number;
  bytesTotal: number;
}

export interface MatchOptions {
  parameters?: IndexParameters;
  onProgress?: (progress: MatchProgress) => void;
}

/** A new alignment must beat the current one by this many matching bytes (bsdiff's rule). */
const SWITCH_MARGIN = 8;
/**
 * Short nearby matches must win by more: a triple costs about 10 compressed bytes, and the
 * text they would replace compresses well as extra bytes (measured on an edited bundle).
 */
const NEARBY_SWITCH_MARGIN = 24;
/**
 * Inside a diff region, a stretch where the alignment mostly fails (score: +1 per mismatch, -3
 * per match) scoring this much is sent as extra bytes instead: new bytes as they are compress
 * far better than the noise of new minus unrelated old bytes, and pay for one more triple.
 */
const POOR_STRETCH_SCORE = 64;
/** How far around the current alignment the nearby index reaches. */
const NEARBY_RADIUS = 512 * 1024;

interface Candidate {
  newStart: number;
  oldStart: number;
  length: number;
}

/**
 * The segments of a BSDIFF40 delta from old to new, front to back.
 *
 * bsdiff's own algorithm, with its suffix array replaced by a hash index of the old file:
 * follow the current alignment (new position - old position) while bytes match; where they
 * stop, look the new window up, verify and extend candidates byte by byte both ways, and take
 * one only when it beats the current alignment over its length by bsdiff's margin; then, as
 * bsdiff does, extend each alignment approximately (on while at least half the bytes match)
 * so that near-identical data costs a mostly-zero diff rather than a new triple.
 */
export function* matchSegments(
  old: Uint8Array,
  neu: Uint8Array,
  options: MatchOptions = {},
): Generator<DeltaSegment> {
  const parameters = options.parameters ?? indexParametersFor(old.length);
  const { windowSize } = parameters;
  const index = new OldFileIndex(old, parameters, (bytesDone) =>
    options.onProgress?.({ phase: 'index', bytesDone, bytesTotal: old.length }),
  );
  const weight = leavingWeight(windowSize);
  const nearby = new NearbyIndex(old, NEARBY_RADIUS);
  const nearbyPositions = new Int32Array(16);
  const oldSize = old.length;
  const newSize = neu.length;

  let lastScan = 0;
  let lastPos = 0;
  let lastOffset = 0;
  let scan = 0;
  /** Candidates may not reach back before the end of the last accepted match. */
  let floor = 0;
  let rejectedOffset = Number.NaN;
  let rejectedUntil = 0;
  let hash = 0;
  let hashAt = -1;
  let nextProgress = 0;
  /** Set by findAt when new[t] starts a run: the first window past it. */
  let runSkipTo = 0;

  /** Exact match length forwards from new[a], old[b]. */
  const forward = (a: number, b: number): number =>
    commonPrefix(neu, a, old, b, Math.min(newSize - a, oldSize - b));
  /** Exact match length backwards from new[a - 1], old[b - 1], not below new[floor]. */
  const backward = (a: number, b: number): number => {
    let n = 0;
    const limit = Math.min(a - floor, b);
    while (n < limit && neu[a - 1 - n] === old[b - 1 - n]) n++;
    return n;
  };

  /** The best candidate alignment whose exact match covers new[t], or undefined. */
  const findAt = (t: number): Candidate | undefined => {
    runSkipTo = 0;
    const first = neu[t]!;
    let runEnd = t + 1;
    while (runEnd < newSize && runEnd - t < windowSize && neu[runEnd] === first) runEnd++;
    if (runEnd - t >= windowSize) return runCandidate(t, first);

    if (hashAt === t - 1 && hashAt >= 0) {
      hash = rollHash(hash, neu[t - 1]!, neu[t + windowSize - 1]!, weight);
    } else {
      hash = windowHash(neu, t, windowSize);
    }
    hashAt = t;
    let best: Candidate | undefined;
    for (let p = index.firstPosition(hash); p >= 0; p = index.nextPosition(p)) {
      const offset = p - t;
      if (offset === lastOffset) continue;
      if (offset === rejectedOffset && t < rejectedUntil) continue;
      const ahead = forward(t, p);
      if (ahead < windowSize) continue; // another window with the same hash bucket
      const behind = backward(t, p);
      const length = ahead + behind;
      if (best === undefined || length > best.length) {
        best = { newStart: t - behind, oldStart: p - behind, length };
      }
    }
    return best;
  };

  /** The best short match at new[t] in the old bytes around the current alignment. */
  const nearbyAt = (t: number): Candidate | undefined => {
    if (t + NEARBY_WINDOW > newSize || oldSize < NEARBY_WINDOW) return undefined;
    nearby.cover(Math.min(Math.max(t + lastOffset, 0), oldSize - 1));
    const count = nearby.candidates(windowHash(neu, t, NEARBY_WINDOW), nearbyPositions);
    let best: Candidate | undefined;
    for (let k = 0; k < count; k++) {
      const p = nearbyPositions[k]!;
      const offset = p - t;
      if (offset === lastOffset) continue;
      if (offset === rejectedOffset && t < rejectedUntil) continue;
      const ahead = forward(t, p);
      if (ahead < NEARBY_WINDOW) continue;
      const behind = backward(t, p);
      if (best === undefined || ahead + behind > best.length) {
        best = { newStart: t - behind, oldStart: p - behind, length: ahead + behind };
      }
    }
    return best;
  };

  /** Whether a candidate beats the current alignment; remembers it when it does not. */
  const beatsCurrent = (candidate: Candidate, margin: number): boolean => {
    const score = currentScore(candidate.newStart, candidate.length);
    if (candidate.length > score + margin) return true;
    rejectedOffset = candidate.oldStart - candidate.newStart;
    rejectedUntil = candidate.newStart + candidate.length;
    return false;
  };

  /** A run of one byte value in new: pair it with the old file's longest run of that value. */
  const runCandidate = (t: number, byte: number): Candidate | undefined => {
    const oldRunLength = index.runLength[byte]!;
    let start = t;
    while (start > floor && neu[start - 1] === byte) start--;
    let end = t;
    while (end < newSize && neu[end] === byte) end++;
    runSkipTo = end - windowSize + 1;
    const runLength = end - start;
    if (oldRunLength < windowSize) return undefined;
    const oldRunStart = index.runStart[byte]!;
    // End to end when the old run is long enough, so that what follows both may match too.
    const oldStart =
      oldRunLength >= runLength ? oldRunStart + oldRunLength - runLength : oldRunStart;
    if (oldStart - start === lastOffset) return undefined;
    if (oldStart - start === rejectedOffset && t < rejectedUntil) return undefined;
    const ahead = forward(start, oldStart);
    const behind = backward(start, oldStart);
    return { newStart: start - behind, oldStart: oldStart - behind, length: ahead + behind };
  };

  /** How many of new[a, a + length) the current alignment matches. */
  const currentScore = (a: number, length: number): number => {
    let score = 0;
    const from = Math.max(a, -lastOffset);
    const to = Math.min(a + length, oldSize - lastOffset);
    for (let i = from; i < to;) {
      if (to - i >= COMPARE_BLOCK && sameBytes(neu, i, old, i + lastOffset, COMPARE_BLOCK)) {
        score += COMPARE_BLOCK;
        i += COMPARE_BLOCK;
        continue;
      }
      for (const stop = Math.min(to, i + COMPARE_BLOCK); i < stop; i++) {
        if (neu[i] === old[i + lastOffset]) score++;
      }
    }
    return score;
  };

  /**
   * bsdiff's approximate extension: how far from new[a], old[b] on (or back, step -1) the
   * share of matching bytes stays best, within `limit` bytes.
   */
  const approximateForward = (a: number, b: number, limit: number): number => {
    let matched = 0;
    let best = 0;
    let length = 0;
    const end = Math.min(limit, oldSize - b);
    for (let i = 0; i < end;) {
      // Through an equal block the score only grows: its best is at the block's end.
      if (end - i >= COMPARE_BLOCK && sameBytes(neu, a + i, old, b + i, COMPARE_BLOCK)) {
        matched += COMPARE_BLOCK;
        i += COMPARE_BLOCK;
        if (matched * 2 - i > best * 2 - length) {
          best = matched;
          length = i;
        }
        continue;
      }
      for (const stop = Math.min(end, i + COMPARE_BLOCK); i < stop;) {
        if (old[b + i] === neu[a + i]) matched++;
        i++;
        if (matched * 2 - i > best * 2 - length) {
          best = matched;
          length = i;
        }
      }
    }
    return length;
  };
  const approximateBackward = (a: number, b: number, limit: number): number => {
    let matched = 0;
    let best = 0;
    let length = 0;
    const end = Math.min(limit, b);
    for (let done = 0; done < end;) {
      const block = COMPARE_BLOCK;
      if (end - done >= block && sameBytes(neu, a - done - block, old, b - done - block, block)) {
        matched += block;
        done += block;
        if (matched * 2 - done > best * 2 - length) {
          best = matched;
          length = done;
        }
        continue;
      }
      for (const stop = Math.min(end, done + block); done < stop;) {
        done++;
        if (old[b - done] === neu[a - done]) matched++;
        if (matched * 2 - done > best * 2 - length) {
          best = matched;
          length = done;
        }
      }
    }
    return length;
  };

  /**
   * Splits a segment's diff region where it holds poor stretches: each becomes the extra bytes
   * of a triple whose seek skips the same length of old, so the alignment goes on after it.
   */
  const splitPoorStretches = (segment: DeltaSegment): DeltaSegment[] => {
    const pieces: DeltaSegment[] = [];
    let pieceStart = 0; // offset in the diff region where the current piece begins
    let score = 0;
    let best = 0;
    let stretchStart = 0;
    let bestEnd = 0;
    const { newStart, oldStart, diffLength } = segment;
    for (let i = 0; i <= diffLength; i++) {
      // An equal block changes nothing while no stretch is open.
      while (
        score <= 0 &&
        best < POOR_STRETCH_SCORE &&
        diffLength - i >= COMPARE_BLOCK &&
        sameBytes(neu, newStart + i, old, oldStart + i, COMPARE_BLOCK)
      ) {
        i += COMPARE_BLOCK;
        best = 0;
      }
      const end = i === diffLength;
      if (!end) {
        if (neu[newStart + i] === old[oldStart + i]) {
          score -= 3;
        } else {
          if (score <= 0) {
            score = 0;
            best = 0;
            stretchStart = i;
          }
          score++;
          if (score > best) {
            best = score;
            bestEnd = i + 1;
          }
        }
      }
      if ((end || score <= 0) && best >= POOR_STRETCH_SCORE) {
        const length = bestEnd - stretchStart;
        pieces.push({
          newStart: newStart + pieceStart,
          oldStart: oldStart + pieceStart,
          diffLength: stretchStart - pieceStart,
          extraLength: length,
          seek: length,
        });
        pieceStart = bestEnd;
        best = 0;
        score = 0;
      } else if (score <= 0) {
        best = 0;
      }
    }
    if (pieces.length === 0) return [segment];
    pieces.push({
      newStart: newStart + pieceStart,
      oldStart: oldStart + pieceStart,
      diffLength: diffLength - pieceStart,
      extraLength: segment.extraLength,
      seek: segment.seek,
    });
    return pieces;
  };

  /** bsdiff's emission: the segment from the last anchor up to the next one. */
  const segmentTo = (anchorScan: number, anchorPos: number, isLast: boolean): DeltaSegment[] => {
    const gap = anchorScan - lastScan;
    let lengthForward = approximateForward(lastScan, lastPos, gap);
    let lengthBack = isLast ? 0 : approximateBackward(anchorScan, anchorPos, gap);
    if (lastScan + lengthForward > anchorScan - lengthBack) {
      const overlap = lastScan + lengthForward - (anchorScan - lengthBack);
      let score = 0;
      let bestScore = 0;
      let split = 0;
      for (let i = 0; i < overlap; i++) {
        if (
          neu[lastScan + lengthForward - overlap + i] === old[lastPos + lengthForward - overlap + i]
        ) {
          score++;
        }
        if (neu[anchorScan - lengthBack + i] === old[anchorPos - lengthBack + i]) score--;
        if (score > bestScore) {
          bestScore = score;
          split = i + 1;
        }
      }
      lengthForward += split - overlap;
      lengthBack -= split;
      // Each side was extended over the other's ground (long zero runs match both): within
      // what is left to it, a side may now do better shorter, leaving poor bytes as extra.
      lengthForward = approximateForward(lastScan, lastPos, lengthForward);
      lengthBack = approximateBackward(anchorScan, anchorPos, lengthBack);
    }
    const segment: DeltaSegment = {
      newStart: lastScan,
      oldStart: lastPos,
      diffLength: lengthForward,
      extraLength: anchorScan - lengthBack - (lastScan + lengthForward),
      seek: isLast ? 0 : anchorPos - lengthBack - (lastPos + lengthForward),
    };
    lastScan = anchorScan - lengthBack;
    lastPos = anchorPos - lengthBack;
    return splitPoorStretches(segment);
  };

  while (scan < newSize) {
    if (scan >= nextProgress) {
      options.onProgress?.({ phase: 'match', bytesDone: scan, bytesTotal: newSize });
      nextProgress = scan + (1 << 22);
    }
    // Follow the current alignment while it matches exactly.
    const o = scan + lastOffset;
    if (o >= 0 && o < oldSize && old[o] === neu[scan]) {
      scan += commonPrefix(neu, scan, old, o, Math.min(newSize - scan, oldSize - o));
      continue;
    }
    if (scan + windowSize > newSize) break; // too short a tail to look up
    let candidate = findAt(scan);
    if (candidate !== undefined && !beatsCurrent(candidate, SWITCH_MARGIN)) candidate = undefined;
    if (candidate === undefined && runSkipTo === 0) {
      candidate = nearbyAt(scan);
      if (candidate !== undefined && !beatsCurrent(candidate, NEARBY_SWITCH_MARGIN))
        candidate = undefined;
    }
    if (candidate !== undefined) {
      // Yielded even when empty: its seek moves the old position.
      yield* segmentTo(candidate.newStart, candidate.oldStart, false);
      lastOffset = candidate.oldStart - candidate.newStart;
      scan = candidate.newStart + candidate.length;
      floor = scan;
      continue;
    }
    // Every window that starts inside a run is that same run: look it up once.
    scan = Math.max(scan + 1, runSkipTo);
  }
  if (newSize > 0) yield* segmentTo(newSize, 0, true);
  options.onProgress?.({ phase: 'match', bytesDone: newSize, bytesTotal: newSize });
}
