// The WebAssembly core (release and debug builds) and its TypeScript twin, driven by the same
// random sequences of guest accesses and device events, must agree on every result, every host
// call, every signalled route and every counter. At least 100,000 operations per run.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createCore } from '../../src/core/create-core.js';
import {
  COUNTER_COUNT,
  FLAT_MAX_VECTORS,
  VECTOR_COUNTER_KINDS,
  MODE_DOORBELL,
  MODE_FLAT,
  MODE_INTX,
  MODE_PLAIN,
} from '../../src/core/abi.js';
import type { DeviceCore } from '../../src/core/abi.js';
import { debugWasm } from '../support/device-harness.js';

type Op =
  | { op: 'read'; bar: number; offset: number; size: number }
  | { op: 'write'; bar: number; offset: number; size: number; lo: number; hi: number }
  | { op: 'control'; flags: number }
  | { op: 'fire'; vector: number }
  | { op: 'route'; peer: number; handle: number }
  | { op: 'unroute'; peer: number }
  | { op: 'read32'; offset: number }
  | { op: 'write32'; offset: number; value: number }
  | { op: 'doorbell'; value: number }
  | { op: 'reset' }
  | { op: 'stateTable'; offset: number; slot: number }
  | { op: 'state'; index: number; value: number };

const offset = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 0, max: 0x11f }) }, // BAR0 and its edge
  { weight: 3, arbitrary: fc.integer({ min: 0, max: 0x1100 }) }, // MSI-X table, hole, PBA
  { weight: 2, arbitrary: fc.constantFrom(0, 4, 8, 0x0c, 0x7fc, 0x800, 0x804, 0xffc, 0xfff) },
  { weight: 1, arbitrary: fc.integer({ min: -8, max: 0x7fffffff }) },
  { weight: 1, arbitrary: fc.constantFrom(0x7ffffffc, 0x80000000, 0xfffffffc) },
);
const bar = fc.oneof(
  { weight: 5, arbitrary: fc.constantFrom(0, 1) },
  { weight: 1, arbitrary: fc.integer({ min: 2, max: 9 }) },
);
const size = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom(1, 2, 4, 8) },
  { weight: 1, arbitrary: fc.integer({ min: -1, max: 10 }) },
);
const u32 = fc.oneof(fc.integer({ min: 0, max: 0xffffffff }), fc.constantFrom(0, 1, 0xfffffffe, 0x80000000));
const peer = fc.oneof(fc.integer({ min: 0, max: 12 }), fc.constantFrom(65535, 65536, 4096));
// Doorbell values aimed at the peers and vectors that exist, with noise in the unused bits (flat
// mode reads all 16 low bits as the vector, so small values matter there).
const doorbell = fc
  .tuple(peer, fc.oneof(fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 10 })))
  .map(([p, low]) => ((p << 16) | low) >>> 0);

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ op: fc.constant('read' as const), bar, offset, size }) },
  { weight: 8, arbitrary: fc.record({ op: fc.constant('write' as const), bar, offset, size, lo: u32, hi: u32 }) },
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constant('write' as const),
      bar: fc.constant(0),
      offset: fc.constant(0x0c),
      size: fc.constant(4),
      lo: doorbell,
      hi: fc.constant(0),
    }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('read32' as const), offset }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('write32' as const), offset, value: fc.oneof(u32, doorbell) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('doorbell' as const), value: fc.oneof(doorbell, u32) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('control' as const), flags: fc.integer({ min: 0, max: 15 }) }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('fire' as const), vector: fc.integer({ min: 0, max: 8 }) }) },
  {
    weight: 3,
    arbitrary: fc.record({ op: fc.constant('route' as const), peer, handle: fc.integer({ min: -2, max: 1000 }) }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('unroute' as const), peer }) },
  { weight: 1, arbitrary: fc.constant({ op: 'reset' as const }) },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant('stateTable' as const),
      offset: u32,
      slot: fc.integer({ min: 0, max: 63 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ op: fc.constant('state' as const), index: fc.integer({ min: 0, max: 80 }), value: u32 }),
  },
);

const setupArb = fc.record({
  mode: fc.constantFrom(MODE_PLAIN, MODE_DOORBELL, MODE_INTX, MODE_FLAT),
  vectors: fc.oneof(fc.integer({ min: 1, max: 8 }), fc.constantFrom(64, 65, 200, 2048)),
  position: fc.integer({ min: 0, max: 65535 }),
});

// The vector count a mode accepts: none for plain, at most 64 for flat.
const vectorsFor = (setup: { mode: number; vectors: number }) =>
  setup.mode === MODE_PLAIN ? 0 : setup.mode === MODE_FLAT ? Math.min(setup.vectors, FLAT_MAX_VECTORS) : setup.vectors;

interface Subject {
  core: DeviceCore;
  events: string[];
}

function subject(kind: 'wasm' | 'ts', wasm?: WebAssembly.Module): Subject {
  const events: string[] = [];
  const core = createCore(
    {
      sendMsi: (lo, hi, data, vector) => events.push(`msi ${lo} ${hi} ${data} ${vector}`),
      setIrqLevel: (level) => events.push(`irq ${level}`),
      statePublished: (value) => events.push(`state ${value}`),
    },
    { kind, wasm },
  );
  return { core, events };
}

function apply(s: Subject, o: Op): unknown {
  const c = s.core;
  switch (o.op) {
    case 'read':
      return [c.mmioRead(o.bar, o.offset, o.size), c.readHigh()];
    case 'write': {
      const n = c.mmioWrite(o.bar, o.offset, o.size, o.lo, o.hi);
      return [n, ...c.signals.slice(0, n), deliverable(c)];
    }
    case 'read32':
      return [c.read32(o.offset), c.readHigh()];
    case 'write32': {
      const n = c.write32(o.offset, o.value);
      return [n, ...c.signals.slice(0, n)];
    }
    case 'doorbell':
      return c.doorbell(o.value);
    case 'control':
      c.setControl(o.flags);
      return [c.getControl(), deliverable(c)];
    case 'fire':
      c.vectorFired(o.vector);
      return c.intxAsserted();
    case 'route':
      return c.addRoute(o.peer, o.handle);
    case 'unroute':
      return c.removePeer(o.peer);
    case 'reset':
      c.reset();
      return null;
    case 'stateTable':
      c.enableStateTable(o.offset, o.slot);
      return c.stateWords();
    case 'state':
      c.stateWrite(o.index, o.value);
      c.stateCommit();
      return Array.from({ length: c.stateWords() }, (_, i) => c.stateRead(i));
  }
}

// Which vectors (and two past the end, which must say 0) MSI-X would deliver right now.
const deliverable = (c: DeviceCore) => Array.from({ length: 10 }, (_, v) => c.vectorDeliverable(v)).join('');
const counters = (c: DeviceCore) => Array.from({ length: COUNTER_COUNT }, (_, i) => c.counterValue(i));
// Per-vector counters (for vectors and kinds past the end too: both must say 0) and per-route doorbells.
const vectorCounters = (c: DeviceCore, vectors: number) =>
  Array.from({ length: (vectors + 2) * (VECTOR_COUNTER_KINDS + 1) }, (_, i) =>
    c.vectorCounter(Math.floor(i / (VECTOR_COUNTER_KINDS + 1)), i % (VECTOR_COUNTER_KINDS + 1)),
  );
const routeDoorbells = (c: DeviceCore) =>
  Array.from({ length: 16 }, (_, p) => Array.from({ length: c.peerVectors(p) + 1 }, (_, v) => c.routeDoorbells(p, v)));

describe('differential: WebAssembly core vs TypeScript twin', () => {
  it('agree on ≥100,000 random operations', () => {
    let total = 0;
    const property = fc.property(setupArb, fc.array(opArb, { minLength: 500, maxLength: 1000 }), (setup, ops) => {
      const subjects = [subject('wasm'), subject('wasm', debugWasm()), subject('ts')];
      const vectors = vectorsFor(setup);
      const inits = subjects.map((s) => s.core.init(setup.mode, vectors, setup.position));
      expect(inits).toEqual([0, 0, 0]);
      ops.forEach((o, i) => {
        const [a, b, t] = subjects.map((s) => apply(s, o));
        // Name the first operation that differs, with the setup, rather than dump the sequence.
        const at = { setup, step: i, o, previous: ops.slice(Math.max(0, i - 3), i) };
        expect({ ...at, result: a }).toEqual({ ...at, result: t });
        expect({ ...at, result: b }).toEqual({ ...at, result: t });
      });
      total += ops.length;
      const [a, b, t] = subjects;
      expect(a.events).toEqual(t.events);
      expect(b.events).toEqual(t.events);
      expect(counters(a.core)).toEqual(counters(t.core));
      expect(counters(b.core)).toEqual(counters(t.core));
      for (let p = 0; p < 16; p++) expect(a.core.peerVectors(p)).toBe(t.core.peerVectors(p));
      expect(vectorCounters(a.core, vectors)).toEqual(vectorCounters(t.core, vectors));
      expect(vectorCounters(b.core, vectors)).toEqual(vectorCounters(t.core, vectors));
      expect(routeDoorbells(a.core)).toEqual(routeDoorbells(t.core));
      expect(routeDoorbells(b.core)).toEqual(routeDoorbells(t.core));
    });
    const seed = process.env.FC_SEED ? Number(process.env.FC_SEED) : undefined;
    const out = fc.check(property, { numRuns: 200, seed, endOnFailure: true });
    if (out.failed) {
      const cause = out.errorInstance instanceof Error ? out.errorInstance.message : String(out.errorInstance);
      throw new Error(`cores differ (reproduce with FC_SEED=${out.seed}):\n${cause.slice(0, 4000)}`);
    }
    expect(total).toBeGreaterThanOrEqual(100_000);
  });

  it('doorbell(v) is write32(0x0C, v) with the handle as its result, in each core', () => {
    const property = fc.property(
      setupArb,
      fc.array(opArb, { maxLength: 200 }),
      fc.array(fc.oneof(doorbell, u32), { minLength: 1, maxLength: 50 }),
      (setup, ops, bells) => {
        for (const kind of ['wasm', 'ts'] as const) {
          // Two cores with one history, then the same doorbells through each entry.
          const [viaWrite, viaDoorbell] = [subject(kind), subject(kind)];
          const vectors = vectorsFor(setup);
          for (const s of [viaWrite, viaDoorbell]) {
            s.core.init(setup.mode, vectors, setup.position);
            for (const o of ops) apply(s, o);
          }
          for (const v of bells) {
            const n = viaWrite.core.write32(0x0c, v);
            expect(viaDoorbell.core.doorbell(v)).toBe(n === 1 ? viaWrite.core.signals[0] : -1);
          }
          expect(counters(viaDoorbell.core)).toEqual(counters(viaWrite.core));
          expect(routeDoorbells(viaDoorbell.core)).toEqual(routeDoorbells(viaWrite.core));
          expect(viaDoorbell.events).toEqual(viaWrite.events);
        }
      },
    );
    fc.assert(property, { numRuns: 300 });
  });
});
