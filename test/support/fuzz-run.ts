// The two devices of the hostile-guest fuzz (test/device/hostile-guest.test.ts), one on the WebAssembly
// core and one on its TypeScript twin, and the checks made after every operation driven into
// both: same results, same host calls in the same order, counters that add up to what the
// operation could do, pending bits only for masked vectors, an INTx pin reported only on change,
// BAR mappings that follow the BAR registers, and read-only registers that stay put.
import { IvshmemDevice } from '../../src/device/device.js';
import type { DeviceCounters } from '../../src/device/device.js';
import { IvshmemError } from '../../src/errors.js';
import type { MasterOption } from '../../src/device/options.js';
import { Rng } from './rng.js';
import {
  bar0PieceValid,
  bar0Pieces,
  describeOp,
  handlePeer,
  handleVector,
  isGuestOp,
  nextOp,
  routeHandle,
} from './hostile-guest.js';
import type { FuzzMode, FuzzOp, GuestShape } from './hostile-guest.js';

export interface Setup {
  mode: FuzzMode;
  vectors?: number;
  id: number;
  master: MasterOption;
  use64?: boolean;
  size: number;
  /** Share of the run's guest accesses. */
  weight: number;
}

export type Event = readonly [string, number | bigint | null, number?, number?];

export interface Side {
  name: string;
  device: IvshmemDevice;
  events: Event[];
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

interface MsixState {
  enabled: boolean;
  maskAll: boolean;
  master: boolean;
}

const MSIX_CONTROL = 0x42;
const CHECK_EVERY = 64;

export async function makeSide(name: string, setup: Setup, core: 'wasm' | 'ts'): Promise<Side> {
  const events: Event[] = [];
  const device = await IvshmemDevice.create({
    mode: setup.mode,
    memory: new ArrayBuffer(setup.size),
    vectors: setup.vectors,
    id: setup.mode === 'plain' ? undefined : setup.id,
    master: setup.master,
    use64: setup.use64,
    core,
    transport: {
      setIrqLevel: (level) => events.push(['irq', level]),
      sendMsi: (address, data, vector) => events.push(['msi', address, data, vector]),
      barMapped: (bar, address) => events.push(['bar', address, bar]),
    },
    doorbell: { ring: (handle) => events.push(['ring', handle]) },
  });
  return { name, device, events };
}

function popcount(n: number): number {
  let c = 0;
  for (let v = n >>> 0; v !== 0; v &= v - 1) c++;
  return c;
}

function same(a: unknown, b: unknown): boolean {
  if (a instanceof Uint8Array && b instanceof Uint8Array) return Buffer.compare(a, b) === 0;
  return a === b;
}

const errorCode = (e: unknown): string | undefined => (e instanceof IvshmemError ? e.code : undefined);

const COUNTER_NAMES = [
  'sent',
  'noPeer',
  'noVector',
  'delivered',
  'pended',
  'disabled',
  'noMaster',
  'badVector',
  'invalid',
] as const;
function flat(c: DeviceCounters): number[] {
  return [
    c.doorbellsSent,
    c.doorbellsDropped.noPeer,
    c.doorbellsDropped.noVector,
    c.interruptsDelivered,
    c.interruptsPended,
    c.interruptsDropped.msixDisabled,
    c.interruptsDropped.noBusMaster,
    c.interruptsDropped.badVector,
    c.invalidGuestAccesses,
  ];
}
const [SENT, NO_PEER, NO_VECTOR, DELIVERED, PENDED, DISABLED, NO_MASTER, BAD_VECTOR, INVALID] = [
  0, 1, 2, 3, 4, 5, 6, 7, 8,
];

/** How much of the interesting behaviour a run reached: a run that reaches none of it proves little. */
export interface Coverage {
  msi: number;
  unmaskDeliveries: number;
  pended: number;
  rings: number;
  noPeer: number;
  noVector: number;
  loopbacks: number;
  saves: number;
  loads: number;
  loadsRefused: number;
  resets: number;
  irqChanges: number;
  mappings: number;
  invalid: number;
}

export const emptyCoverage = (): Coverage => ({
  msi: 0,
  unmaskDeliveries: 0,
  pended: 0,
  rings: 0,
  noPeer: 0,
  noVector: 0,
  loopbacks: 0,
  saves: 0,
  loads: 0,
  loadsRefused: 0,
  resets: 0,
  irqChanges: 0,
  mappings: 0,
  invalid: 0,
});

export class FuzzRun {
  readonly coverage = emptyCoverage();
  readonly a: Side;
  readonly b: Side;
  readonly shape: GuestShape;
  readonly rng: Rng;
  guestAccesses = 0;
  operations = 0;
  #step = 0;
  #recent: FuzzOp[] = [];
  #routes = new Map<number, number>(); // peer -> vectors connected
  #snapshots: Uint8Array[] = [];
  #counters: number[];
  #pending: number[] = []; // PBA dwords as last read
  #ctrl = new Map<number, number>(); // vector-control words read since the entry last changed
  #level = 0; // INTx level last reported
  #mapped = new Map<number, bigint | null>(); // BAR addresses last reported
  #identity: number[];

  constructor(
    readonly setup: Setup,
    readonly index: number,
    a: Side,
    b: Side,
    seed: number,
    readonly reproduce: string,
  ) {
    this.a = a;
    this.b = b;
    this.rng = new Rng(seed);
    const d = a.device;
    const bar1 = d.bars.find((x) => x.index === 1);
    this.shape = {
      mode: setup.mode,
      vectors: d.vectors,
      bar1Size: bar1?.size ?? 0,
      pbaOffset: setup.mode === 'doorbell' ? d.configRead(0x48, 4) & ~7 : 0,
      bar2Size: setup.size,
      peers: [...new Set([setup.id, 1, 2, 7, 40000, 65535])],
    };
    this.#counters = flat(d.counters());
    this.#identity = this.#readIdentity();
    this.#pending = this.#readPba();
    // Events from creation (none expected) must agree too; start both logs clean.
    this.#compareEvents(0, 0, 'creation');
    a.events.length = 0;
    b.events.length = 0;
  }

  fail(message: string, op?: FuzzOp): never {
    const s = this.setup;
    const lines = [
      message,
      `  reproduce: ${this.reproduce}`,
      `  setup #${this.index}: mode ${s.mode}, vectors ${s.vectors ?? 0}, id ${s.id}, master ${s.master}, use64 ${s.use64 ?? true}, BAR2 ${s.size}`,
      `  step ${this.#step}${op ? `: ${describeOp(op)}` : ''}`,
      `  before: ${this.#recent.slice(0, -1).map(describeOp).join('; ')}`,
    ];
    throw new Error(lines.join('\n'));
  }

  /** Connects a few vectors of most peers, as a server would announce them. */
  connectInitialRoutes(): void {
    if (this.setup.mode === 'plain') return;
    for (const peer of this.shape.peers) {
      if (peer === 7) continue; // one announced peer id stays unconnected
      const n = 1 + this.rng.int(Math.min(this.shape.vectors, 260));
      for (let v = 0; v < n; v++) this.step({ k: 'route', peer });
    }
  }

  run(guestTarget: number): void {
    this.connectInitialRoutes();
    while (this.guestAccesses < guestTarget) this.step(nextOp(this.rng, this.shape, this.#snapshots.length));
  }

  /** One operation per seed, so fast-check can drop operations and simplify seeds when shrinking. */
  runSeeds(seeds: number[]): void {
    this.connectInitialRoutes();
    for (const seed of seeds) this.step(nextOp(new Rng(seed), this.shape, this.#snapshots.length));
  }

  #apply(side: Side, op: FuzzOp): Outcome {
    const d = side.device;
    try {
      switch (op.k) {
        case 'cfgRead':
          return { ok: true, value: d.configRead(op.offset, op.size) };
        case 'cfgWrite':
          d.configWrite(op.offset, op.size, op.value);
          return { ok: true, value: undefined };
        case 'read':
          return { ok: true, value: d.mmioRead(op.bar, op.offset, op.size) };
        case 'write':
          d.mmioWrite(op.bar, op.offset, op.size, op.value);
          return { ok: true, value: undefined };
        case 'fire':
          d.fireVector(op.vector);
          return { ok: true, value: undefined };
        case 'route': {
          const peer = op.peer;
          const handle = routeHandle(
            Number.isInteger(peer) && peer >= 0 ? peer & 0xffff : 0,
            this.#routes.get(peer) ?? 0,
          );
          return { ok: true, value: d.connectPeerVector(peer, handle) };
        }
        case 'unroute':
          return { ok: true, value: d.disconnectPeer(op.peer) };
        case 'reset':
          d.reset();
          return { ok: true, value: undefined };
        case 'save':
          return { ok: true, value: d.saveState() };
        case 'load':
          d.loadState(this.#loadBytes(op));
          return { ok: true, value: undefined };
      }
    } catch (error) {
      return { ok: false, error };
    }
  }

  #loadBytes(op: Extract<FuzzOp, { k: 'load' }>): Uint8Array {
    const bytes = this.#snapshots[op.snapshot].slice();
    if (op.corrupt >= 0 && op.corrupt < bytes.length) bytes[op.corrupt] ^= op.xor;
    return bytes;
  }

  step(op: FuzzOp): void {
    this.#step++;
    this.operations++;
    this.#recent.push(op);
    if (this.#recent.length > 6) this.#recent.shift();
    const guest = isGuestOp(op);
    if (guest) this.guestAccesses++;
    const fireClass = op.k === 'fire' ? this.#predictFire(op.vector) : -1;
    const marks = [this.a.events.length, this.b.events.length];

    const ra = this.#apply(this.a, op);
    const rb = this.#apply(this.b, op);
    for (const [side, r] of [
      [this.a, ra],
      [this.b, rb],
    ] as const) {
      if (r.ok) continue;
      if (guest) this.fail(`an exception escaped a guest access on ${side.name}: ${String(r.error)}`, op);
      if (errorCode(r.error) === undefined) this.fail(`an uncoded error on ${side.name}: ${String(r.error)}`, op);
    }
    if (
      ra.ok !== rb.ok ||
      (ra.ok && rb.ok && !same(ra.value, rb.value)) ||
      (!ra.ok && !rb.ok && errorCode(ra.error) !== errorCode(rb.error))
    ) {
      const show = (r: Outcome) => (r.ok ? String(r.value) : `throws ${errorCode(r.error)}`);
      this.fail(`results differ: wasm ${show(ra)}, ts ${show(rb)}`, op);
    }
    const events = this.#compareEvents(marks[0], marks[1], op);

    if (op.k === 'route') this.#checkRoute(op.peer, ra);
    if (op.k === 'unroute') this.#checkUnroute(op.peer, ra);
    if (op.k === 'save') {
      if (
        this.setup.master === 'on'
          ? !ra.ok
          : errorCode(ra.ok ? undefined : ra.error) !== 'ERR_IVSHMEM_MIGRATION_BLOCKED'
      ) {
        this.fail(`saveState with master ${this.setup.master} gave ${ra.ok ? 'a state' : errorCode(ra.error)}`, op);
      }
      if (ra.ok) {
        if (this.#snapshots.length < 4) this.#snapshots.push(ra.value as Uint8Array);
        else this.#snapshots[this.rng.int(4)] = ra.value as Uint8Array;
      }
    }
    const loaded = op.k === 'load' && ra.ok;
    if (
      op.k === 'load' &&
      !ra.ok &&
      this.setup.master !== 'on' &&
      errorCode(ra.error) !== 'ERR_IVSHMEM_MIGRATION_BLOCKED'
    ) {
      this.fail(`loadState on a device that may not migrate gave ${errorCode(ra.error)}`, op);
    }
    if (op.k === 'reset' || loaded || (op.k === 'write' && op.bar === 1)) this.#forgetCtrl(op);
    const c = this.coverage;
    if (op.k === 'save' && ra.ok) c.saves++;
    if (op.k === 'load' && loaded) c.loads++;
    else if (op.k === 'load') c.loadsRefused++;
    if (op.k === 'reset') c.resets++;

    this.#checkCounters(op, guest, fireClass, events, loaded);
    this.#checkIntx(op, events);
    this.#checkMappings(op, events);
    if (op.k === 'reset' || loaded || op.k === 'cfgWrite' || this.#step % CHECK_EVERY === 0) {
      this.#checkReadOnly(op);
    }
    if (this.#step % CHECK_EVERY === 0) {
      this.#ctrl.clear(); // re-read every vector control word now and then, trusting no cache
      this.#compareConfig(op);
    }

    // Loopback: a doorbell to our own id signals one of our own vectors.
    for (const e of events) {
      if (e[0] === 'ring' && handlePeer(e[1] as number) === this.setup.id) {
        c.loopbacks++;
        this.step({ k: 'fire', vector: handleVector(e[1] as number) });
      }
    }
  }

  #compareEvents(ma: number, mb: number, op: FuzzOp | string): Event[] {
    const ea = this.a.events;
    const eb = this.b.events;
    const show = (e: readonly Event[]) => e.map((x) => x.join(' ')).join(', ');
    if (ea.length - ma !== eb.length - mb) {
      this.fail(
        `host calls differ: wasm [${show(ea.slice(ma))}], ts [${show(eb.slice(mb))}]`,
        typeof op === 'string' ? undefined : op,
      );
    }
    for (let i = 0; i < ea.length - ma; i++) {
      const x = ea[ma + i];
      const y = eb[mb + i];
      if (x.length !== y.length || x.some((v, j) => v !== y[j])) {
        this.fail(
          `host call ${i} differs: wasm [${show(ea.slice(ma))}], ts [${show(eb.slice(mb))}]`,
          typeof op === 'string' ? undefined : op,
        );
      }
    }
    // Keep the logs short: everything before this operation has been compared.
    const out = ea.slice(ma);
    ea.length = 0;
    eb.length = 0;
    return out;
  }

  #checkRoute(peer: number, r: Outcome): void {
    const n = this.#routes.get(peer) ?? 0;
    const code = r.ok ? undefined : errorCode(r.error);
    let want: string | number;
    if (!Number.isInteger(peer) || peer < 0 || peer > 65535) want = 'ERR_IVSHMEM_INVALID_PEER';
    else if (n >= this.shape.vectors) want = 'ERR_IVSHMEM_TOO_MANY_VECTORS';
    else want = n;
    const got = r.ok ? (r.value as number) : code!;
    if (got !== want) this.fail(`connectPeerVector gave ${got}, expected ${want}`);
    if (r.ok) this.#routes.set(peer, n + 1);
  }

  #checkUnroute(peer: number, r: Outcome): void {
    const n = this.#routes.get(peer);
    const want = n ?? 'ERR_IVSHMEM_INVALID_PEER';
    const got = r.ok ? (r.value as number) : errorCode(r.error)!;
    if (got !== want) this.fail(`disconnectPeer gave ${got}, expected ${want}`);
    this.#routes.delete(peer);
  }

  // ---- interrupts ----

  #msix(): MsixState {
    const control = this.a.device.configRead(MSIX_CONTROL, 2);
    return {
      enabled: (control & 0x8000) !== 0,
      maskAll: (control & 0x4000) !== 0,
      master: (this.a.device.configRead(0x04, 2) & 0x4) !== 0,
    };
  }

  #entryCtrl(v: number): number {
    let c = this.#ctrl.get(v);
    if (c === undefined) {
      c = this.a.device.mmioRead(1, v * 16 + 12, 4);
      const other = this.b.device.mmioRead(1, v * 16 + 12, 4);
      if (other !== c)
        this.fail(`vector ${v} control reads 0x${c.toString(16)} on wasm, 0x${other.toString(16)} on ts`);
      this.#ctrl.set(v, c);
    }
    return c;
  }

  #forgetCtrl(op: FuzzOp): void {
    if (op.k !== 'write') {
      this.#ctrl.clear();
      return;
    }
    const first = Math.floor(Math.max(0, Math.min(op.offset, 2 ** 32)) / 16);
    if (!Number.isInteger(op.offset) || op.offset < 0 || first > this.shape.vectors) return;
    for (let v = first; v * 16 < op.offset + 8 && v <= this.shape.vectors; v++) this.#ctrl.delete(v);
  }

  /** Which counter a fired vector must land in, judged from the state before it fires. */
  #predictFire(vector: number): number {
    const v = vector >>> 0;
    if (v >= this.shape.vectors) return BAD_VECTOR;
    if (this.setup.mode === 'intx') return DELIVERED;
    const m = this.#msix();
    if (!m.enabled) return DISABLED;
    if (m.maskAll || (this.#entryCtrl(v) & 1) !== 0) return PENDED;
    return m.master ? DELIVERED : NO_MASTER;
  }

  #readPba(): number[] {
    if (this.setup.mode !== 'doorbell') return [];
    const words = ((this.shape.vectors + 63) >>> 6) * 2;
    const out: number[] = [];
    for (let i = 0; i < words; i++) {
      const x = this.a.device.mmioRead(1, this.shape.pbaOffset + 4 * i, 4);
      const y = this.b.device.mmioRead(1, this.shape.pbaOffset + 4 * i, 4);
      if (x !== y) this.fail(`PBA dword ${i} reads 0x${x.toString(16)} on wasm, 0x${y.toString(16)} on ts`);
      out.push(x);
    }
    return out;
  }

  /** Pending bits only for vectors that exist and are masked (entry mask, or function masked). */
  #checkPba(words: number[], op: FuzzOp): void {
    let m: MsixState | undefined;
    words.forEach((w, i) => {
      for (let bits = w >>> 0; bits !== 0; bits &= bits - 1) {
        const v = i * 32 + (31 - Math.clz32(bits & -bits));
        if (v >= this.shape.vectors)
          this.fail(`PBA bit ${v} is set, but the device has ${this.shape.vectors} vectors`, op);
        m ??= this.#msix();
        if (m.enabled && !m.maskAll && (this.#entryCtrl(v) & 1) === 0)
          this.fail(`vector ${v} is pending but not masked`, op);
      }
    });
  }

  #loadedPending(op: Extract<FuzzOp, { k: 'load' }>): number {
    if (this.setup.mode !== 'doorbell') return 0;
    const bytes = this.#loadBytes(op);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const first = 284 + 4 * (3 + this.shape.vectors * 4);
    let n = 0;
    for (let at = first; at < bytes.length; at += 4) n += popcount(view.getUint32(at, true));
    return n;
  }

  #expectedInvalid(op: FuzzOp): number | undefined {
    if (op.k === 'cfgRead' || op.k === 'cfgWrite') {
      const ok =
        (op.size === 1 || op.size === 2 || op.size === 4) &&
        Number.isInteger(op.offset) &&
        op.offset >= 0 &&
        op.offset + op.size <= 256;
      return ok ? 0 : 1;
    }
    if (op.k !== 'read' && op.k !== 'write') return 0;
    if (op.bar === 2) {
      return Number.isInteger(op.offset) &&
        op.offset >= 0 &&
        op.offset + op.size <= this.shape.bar2Size &&
        op.size >= 1 &&
        op.size <= 8
        ? 0
        : 1;
    }
    if (op.bar === 0) {
      const p = bar0Pieces(op.offset, op.size, op.k === 'write' ? op.value : 0);
      if (p === null || p.hole) return 1;
      return p.pieces.every((x) => bar0PieceValid(x.at, op.k === 'write')) ? 0 : 1;
    }
    if (op.bar === 1 && this.setup.mode === 'doorbell') {
      const inRange =
        Number.isInteger(op.offset) && op.offset >= 0 && op.offset <= 0x7fffffff && op.size >= 1 && op.size <= 8;
      return inRange ? undefined : 1;
    }
    return 1; // no such BAR
  }

  #checkCounters(op: FuzzOp, guest: boolean, fireClass: number, events: Event[], loaded: boolean): void {
    const now = flat(this.a.device.counters());
    const other = flat(this.b.device.counters());
    for (let i = 0; i < now.length; i++) {
      if (now[i] !== other[i]) this.fail(`counter ${COUNTER_NAMES[i]} is ${now[i]} on wasm, ${other[i]} on ts`, op);
    }
    const d = now.map((x, i) => x - this.#counters[i]);
    this.#counters = now;
    d.forEach((x, i) => {
      if (x < 0) this.fail(`counter ${COUNTER_NAMES[i]} went down by ${-x}`, op);
    });
    const bad = (what: string) =>
      this.fail(
        `${what}; counter deltas ${COUNTER_NAMES.map((n, i) => `${n} ${d[i]}`).join(', ')}; host calls [${events.map((e) => e.join(' ')).join(', ')}]`,
        op,
      );

    // Guest accesses: at most one invalid each, exactly as the model says where it knows.
    const invalid = guest ? this.#expectedInvalid(op) : 0;
    if (d[INVALID] > 1 || (invalid !== undefined && d[INVALID] !== invalid))
      bad(`invalidGuestAccesses grew by ${d[INVALID]}, expected ${invalid ?? '0 or 1'}`);
    const c = this.coverage;
    c.invalid += d[INVALID];
    c.rings += d[SENT];
    c.noPeer += d[NO_PEER];
    c.noVector += d[NO_VECTOR];
    c.pended += d[PENDED];
    if (op.k !== 'fire') c.unmaskDeliveries += d[DELIVERED] + d[NO_MASTER];

    // Doorbells: every doorbell-register piece is sent or dropped, and rings the predicted route.
    const rings = events.filter((e) => e[0] === 'ring').map((e) => e[1] as number);
    const want = [0, 0, 0];
    const handles: number[] = [];
    if (op.k === 'write' && op.bar === 0) {
      for (const piece of bar0Pieces(op.offset, op.size, op.value)?.pieces ?? []) {
        if ((piece.at & 0xfc) !== 0x0c) continue;
        const peer = piece.value >>> 16;
        const vector = piece.value & 0xff;
        const n = this.#routes.get(peer);
        if (n === undefined) want[NO_PEER]++;
        else if (vector >= n) want[NO_VECTOR]++;
        else {
          want[SENT]++;
          handles.push(routeHandle(peer, vector));
        }
      }
    }
    if (d[SENT] !== want[SENT] || d[NO_PEER] !== want[NO_PEER] || d[NO_VECTOR] !== want[NO_VECTOR])
      bad(`doorbell counters, expected sent ${want[SENT]}, no peer ${want[NO_PEER]}, no vector ${want[NO_VECTOR]}`);
    if (rings.length !== handles.length || rings.some((h, i) => h !== handles[i]))
      bad(`rang [${rings.join(' ')}], expected [${handles.join(' ')}]`);

    // Interrupts: a fired vector lands in exactly one counter, the one its state implies; anything
    // else can only deliver (or drop, without bus mastering) vectors whose pending bit it cleared.
    const outcomes = d[DELIVERED] + d[PENDED] + d[DISABLED] + d[NO_MASTER] + d[BAD_VECTOR];
    const msis = events.filter((e) => e[0] === 'msi');
    if (msis.length !== (this.setup.mode === 'doorbell' ? d[DELIVERED] : 0))
      bad(`${msis.length} MSI messages for ${d[DELIVERED]} deliveries`);
    const pending = this.#readPba();
    const before = this.#pending.reduce((n, w) => n + popcount(w), 0);
    const after = pending.reduce((n, w) => n + popcount(w), 0);
    this.#pending = pending;
    if (op.k === 'fire') {
      if (outcomes !== 1) bad(`a fired vector had ${outcomes} outcomes`);
      if (d[fireClass] !== 1) bad(`fired vector landed elsewhere than ${COUNTER_NAMES[fireClass]}`);
      if (d[PENDED] === 0 && after !== before) bad(`PBA went from ${before} to ${after} bits without a pend`);
    } else {
      if (d[PENDED] + d[DISABLED] + d[BAD_VECTOR] !== 0) bad('interrupts counted without a fired vector');
      let cleared = before - after;
      if (op.k === 'reset') cleared = 0;
      if (loaded) cleared = this.#loadedPending(op as Extract<FuzzOp, { k: 'load' }>) - after;
      if (d[DELIVERED] + d[NO_MASTER] !== cleared)
        bad(`${d[DELIVERED] + d[NO_MASTER]} deliveries, but ${cleared} pending bits cleared (${before} → ${after})`);
      if (op.k === 'reset' && after !== 0) bad('reset left pending bits');
    }
    if (this.setup.mode === 'doorbell') {
      if (
        d[DELIVERED] + d[NO_MASTER] + d[PENDED] > 0 ||
        op.k === 'cfgWrite' ||
        op.k === 'write' ||
        loaded ||
        this.#step % CHECK_EVERY === 0
      )
        this.#checkPba(pending, op);
      if (msis.length > 0) this.#checkMessages(msis, op);
      c.msi += msis.length;
    }
  }

  /** Each message carries its table entry's address and data, and its vector is unmasked. */
  #checkMessages(msis: Event[], op: FuzzOp): void {
    const m = this.#msix();
    if (!m.enabled || m.maskAll || !m.master)
      this.fail('an MSI was sent while MSI-X was off or masked, or without bus mastering', op);
    for (const [, address, data, vector] of msis) {
      const v = vector!;
      const entryAddress = this.a.device.mmioRead(1, v * 16, 8);
      const entryData = this.a.device.mmioRead(1, v * 16 + 8, 4);
      if (address !== Number(entryAddress) || data !== entryData) {
        this.fail(
          `vector ${v} sent (0x${(address as number).toString(16)}, 0x${data!.toString(16)}), its entry holds (0x${entryAddress.toString(16)}, 0x${entryData.toString(16)})`,
          op,
        );
      }
      if ((this.#entryCtrl(v) & 1) !== 0) this.fail(`vector ${v} was sent while its entry is masked`, op);
    }
  }

  /** The INTx pin: 0 or 1, reported only on change (a state load re-reports), following Interrupt Status. */
  #checkIntx(op: FuzzOp, events: Event[]): void {
    for (const e of events) {
      if (e[0] !== 'irq') continue;
      if (this.setup.mode !== 'intx') this.fail(`setIrqLevel(${e[1]}) in ${this.setup.mode} mode`, op);
      if (e[1] !== 0 && e[1] !== 1) this.fail(`setIrqLevel(${e[1]})`, op);
      if (e[1] === this.#level && op.k !== 'load') this.fail(`setIrqLevel(${e[1]}) repeated the level`, op);
      if (e[1] !== this.#level) this.coverage.irqChanges++;
      this.#level = e[1];
    }
    if (this.setup.mode !== 'intx') return;
    const d = this.a.device;
    const line = (d.configRead(0x06, 1) & 0x08) !== 0 && (d.configRead(0x05, 1) & 0x04) === 0 ? 1 : 0;
    if (line !== this.#level)
      this.fail(`the pin was last reported ${this.#level}, but status and command say ${line}`, op);
  }

  // ---- configuration space ----

  /** barMapped reports changes only, and the BARs' addresses follow memory decoding and the BAR registers. */
  #checkMappings(op: FuzzOp, events: Event[]): void {
    let changed = false;
    for (const e of events) {
      if (e[0] !== 'bar') continue;
      const bar = e[2]!;
      if ((this.#mapped.get(bar) ?? null) === e[1]) this.fail(`barMapped(${bar}, ${e[1]}) repeated the address`, op);
      this.#mapped.set(bar, e[1] as bigint | null);
      this.coverage.mappings++;
      changed = true;
    }
    if (!changed && op.k !== 'cfgWrite' && op.k !== 'reset' && op.k !== 'load') return;
    const d = this.a.device;
    const decoding = (d.configRead(0x04, 2) & 0x2) !== 0;
    for (const bar of d.bars) {
      let expected: bigint | null = null;
      if (decoding) {
        const at = 0x10 + 4 * bar.index;
        let raw = BigInt(d.configRead(at, 4));
        if (bar.type === 'mem64') raw |= BigInt(d.configRead(at + 4, 4)) << 32n;
        const base = raw & ~BigInt(bar.size - 1);
        const limit = bar.type === 'mem64' ? 2n ** 64n : 2n ** 32n;
        expected = base + BigInt(bar.size) < limit ? base : null; // a BAR that would wrap decodes nowhere
      }
      const reported = this.#mapped.get(bar.index) ?? null;
      if (reported !== expected)
        this.fail(`BAR${bar.index} was last reported at ${reported}, its registers say ${expected}`, op);
    }
  }

  #readIdentity(): number[] {
    const d = this.a.device;
    const out = [
      d.configRead(0x00, 4),
      d.configRead(0x08, 4),
      d.configRead(0x0e, 1),
      d.configRead(0x2c, 4),
      d.configRead(0x34, 1),
      d.configRead(0x3d, 1),
      d.configRead(0x30, 4),
    ];
    if (this.setup.mode === 'doorbell')
      out.push(
        d.configRead(0x40, 2),
        d.configRead(MSIX_CONTROL, 2) & 0x7ff,
        d.configRead(0x44, 4),
        d.configRead(0x48, 4),
      );
    return out;
  }

  #checkReadOnly(op: FuzzOp): void {
    const d = this.a.device;
    const now = this.#readIdentity();
    if (now.some((x, i) => x !== this.#identity[i]))
      this.fail(
        `read-only registers changed: [${this.#identity.map((x) => x.toString(16))}] → [${now.map((x) => x.toString(16))}]`,
        op,
      );
    if (now[0] !== 0x11101af4 || now[1] >>> 16 !== 0x0500) this.fail('vendor, device or class id is wrong', op);
    if (
      this.setup.mode === 'doorbell' &&
      (now[8] !== this.shape.vectors - 1 || now[9] !== 1 || now[10] !== (this.shape.pbaOffset | 1))
    )
      this.fail('MSI-X table size or location is wrong', op);
    const slots = [0, 0, 0, 0, 0, 0]; // expected low bits per BAR slot; -1 for the high half of a 64-bit BAR
    const sizes = [0, 0, 0, 0, 0, 0];
    for (const bar of d.bars) {
      slots[bar.index] = (bar.type === 'mem64' ? 0x4 : 0) | (bar.prefetchable ? 0x8 : 0);
      sizes[bar.index] = bar.size;
      if (bar.type === 'mem64') slots[bar.index + 1] = -1;
    }
    slots.forEach((low, i) => {
      if (low === -1) return;
      const raw = d.configRead(0x10 + 4 * i, 4);
      if (sizes[i] === 0 ? raw !== 0 : (raw & 0xf) !== low || (raw & (sizes[i] - 1) & ~0xf) !== 0) {
        this.fail(`BAR${i} reads 0x${raw.toString(16)}: its type or size bits changed`, op);
      }
    });
  }

  #compareConfig(op: FuzzOp): void {
    for (let at = 0; at < 256; at += 4) {
      const x = this.a.device.configRead(at, 4);
      const y = this.b.device.configRead(at, 4);
      if (x !== y)
        this.fail(`config dword 0x${at.toString(16)} reads 0x${x.toString(16)} on wasm, 0x${y.toString(16)} on ts`, op);
    }
  }
}
