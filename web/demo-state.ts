// What the demo page knows, kept as plain data: the view draws it, and tests read it as
// window.ivshmemDemo. Round trips go into an hdr histogram (percentiles) and the small
// power-of-two histogram the Node demo prints (src/demo/summary.ts).
import hdr from 'hdr-histogram-js';
import { bucketOf, histogram, HISTOGRAM_BUCKETS, percentiles } from '../src/demo/summary.js';
import type { DemoSummary, Percentiles } from '../src/demo/summary.js';
import type { PeerReport } from './messages.js';

export interface PeerView extends Omit<PeerReport, 'type' | 'samples' | 'console'> {
  /** Its worker is still running. */
  alive: boolean;
}

export interface DemoState {
  /** `peers` counts every peer, the v86 guest (when `guest`) included. */
  settings: { peers: number; guest: boolean; senders: number; count: number; warmup: number };
  peers: PeerView[];
  totals: { sent: number; intact: number; corrupt: number; doorbells: number; interrupts: number };
  /** Leaves the directory announced, with the peers that have heard of each. */
  leaves: { id: number; reason: string; heardBy: number[] }[];
  log: string[];
  latency: Percentiles;
  histogram: DemoSummary['histogram'];
  /** Every sending peer has sent its count and had it acknowledged. */
  done: boolean;
  failures: string[];
  /** The v86 guest's console, its last few KB ('' without a guest). */
  guestConsole: string;
}

export class DemoModel {
  readonly state: DemoState;
  readonly #roundTrips = hdr.build({
    bitBucketSize: 64,
    numberOfSignificantValueDigits: 3,
    highestTrackableValue: 60e9,
  });
  readonly #buckets = new Array<number>(HISTOGRAM_BUCKETS).fill(0);

  constructor(settings: DemoState['settings']) {
    this.state = {
      settings,
      peers: [],
      totals: { sent: 0, intact: 0, corrupt: 0, doorbells: 0, interrupts: 0 },
      leaves: [],
      log: [],
      latency: percentiles(this.#roundTrips),
      histogram: [],
      done: false,
      failures: [],
      guestConsole: '',
    };
  }

  joined(id: number): void {
    this.state.log.push(`peer ${id} joined`);
  }

  left(id: number, reason: string): void {
    const peer = this.#peer(id);
    if (peer !== undefined) peer.alive = false;
    this.state.leaves.push({ id, reason, heardBy: [] });
    this.state.log.push(`peer ${id} left: ${reason}`);
  }

  failed(what: string): void {
    this.state.failures.push(what);
    this.state.log.push(`failed: ${what}`);
  }

  report(r: PeerReport): void {
    const { type: _type, samples, console: guestConsole, ...counts } = r;
    if (guestConsole !== undefined) this.state.guestConsole = guestConsole;
    const peer = this.#peer(r.id);
    if (peer === undefined) this.state.peers.push({ ...counts, alive: true });
    else if (peer.alive) Object.assign(peer, counts);
    for (const ns of samples) {
      this.#roundTrips.recordValue(ns);
      this.#buckets[bucketOf(ns)]++;
    }
    for (const leave of this.state.leaves)
      if (r.leftSeen.includes(leave.id) && !leave.heardBy.includes(r.id)) leave.heardBy.push(r.id);
    this.#sum();
  }

  #peer(id: number): PeerView | undefined {
    return this.state.peers.find((p) => p.id === id);
  }

  #sum(): void {
    const s = this.state;
    const total = (f: (p: PeerView) => number) => s.peers.reduce((a, p) => a + f(p), 0);
    s.totals = {
      sent: total((p) => p.sent),
      intact: total((p) => p.received),
      corrupt: total((p) => p.corrupt),
      doorbells: total((p) => p.doorbellsSent),
      interrupts: total((p) => p.interruptsDelivered),
    };
    s.latency = percentiles(this.#roundTrips);
    s.histogram = histogram(this.#buckets);
    const senders = s.peers.filter((p) => p.sends);
    s.done = s.settings.count > 0 && senders.length === s.settings.senders && senders.every((p) => p.done);
  }
}
