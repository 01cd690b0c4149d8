// Turning the peers' reports into the demo's summary: merged counts, latency percentiles, and a
// small histogram a person can read at a glance.
import hdr from 'hdr-histogram-js';
import type { Histogram } from 'hdr-histogram-js';

/** What one peer reports to the demo when it is done (and, partly, while it runs). */
export interface PeerStats {
  id: number;
  sent: number;
  received: number;
  acked: number;
  corrupt: number;
  interrupts: number;
  doorbellsSent: number;
  doorbellsDropped: number;
  /** hdr histograms (base64) of one-way and round-trip latency in nanoseconds. */
  oneWay: string;
  roundTrip: string;
  /** One-way latencies per histogram bucket (see bucketOf). */
  buckets: number[];
}

export interface Percentiles {
  count: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
}

export interface DemoSummary {
  peers: number;
  vectors: number;
  sizeBytes: number;
  durationMs: number;
  messages: { sent: number; received: number; acknowledged: number; corrupt: number };
  doorbells: { sent: number; dropped: number };
  interrupts: number;
  /** Microseconds. */
  latencyUs: { oneWay: Percentiles; roundTrip: Percentiles };
  histogram: { fromUs: number; toUs: number; count: number }[];
  perPeer: Omit<PeerStats, 'oneWay' | 'roundTrip' | 'buckets'>[];
}

/** p50, p99, p99.9 and max of `h` (nanoseconds) in microseconds, two decimals. */
export function percentiles(h: Histogram): Percentiles {
  const us = (ns: number) => Math.round(ns / 10) / 100;
  return {
    count: h.totalCount,
    p50: us(h.getValueAtPercentile(50)),
    p99: us(h.getValueAtPercentile(99)),
    p999: us(h.getValueAtPercentile(99.9)),
    max: us(h.maxValue),
  };
}

/** Bucket of a latency for the small histogram: 0 is below 1 µs, k is [2^(k-1), 2^k) µs. */
export const HISTOGRAM_BUCKETS = 24;
export function bucketOf(ns: number): number {
  if (ns < 1000) return 0;
  return Math.min(HISTOGRAM_BUCKETS - 1, Math.floor(Math.log2(ns / 1000)) + 1);
}

/** The buckets of bucketOf as rows, up to the last that is not empty. */
export function histogram(counts: number[]): DemoSummary['histogram'] {
  const last = counts.reduce((hi, c, i) => (c > 0 ? i : hi), 0);
  return counts.slice(0, last + 1).map((count, k) => ({ fromUs: k === 0 ? 0 : 2 ** (k - 1), toUs: 2 ** k, count }));
}

export function summarize(
  reports: PeerStats[],
  setup: { peers: number; vectors: number; sizeBytes: number; durationMs: number },
): DemoSummary {
  const oneWay = hdr.build({ bitBucketSize: 64, numberOfSignificantValueDigits: 3, highestTrackableValue: 60e9 });
  const roundTrip = hdr.build({ bitBucketSize: 64, numberOfSignificantValueDigits: 3, highestTrackableValue: 60e9 });
  for (const r of reports) {
    oneWay.add(hdr.decodeFromCompressedBase64(r.oneWay));
    roundTrip.add(hdr.decodeFromCompressedBase64(r.roundTrip));
  }
  const sum = (f: (r: PeerStats) => number) => reports.reduce((a, r) => a + f(r), 0);
  return {
    ...setup,
    messages: {
      sent: sum((r) => r.sent),
      received: sum((r) => r.received),
      acknowledged: sum((r) => r.acked),
      corrupt: sum((r) => r.corrupt),
    },
    doorbells: { sent: sum((r) => r.doorbellsSent), dropped: sum((r) => r.doorbellsDropped) },
    interrupts: sum((r) => r.interrupts),
    latencyUs: { oneWay: percentiles(oneWay), roundTrip: percentiles(roundTrip) },
    histogram: histogram(
      reports.reduce(
        (acc, r) => acc.map((c, i) => c + (r.buckets[i] ?? 0)),
        new Array<number>(HISTOGRAM_BUCKETS).fill(0),
      ),
    ),
    perPeer: reports.map(({ oneWay: _o, roundTrip: _r, buckets: _b, ...rest }) => rest),
  };
}
