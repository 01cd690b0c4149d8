// Hostile guest: over a million random configuration-space and BAR accesses per run, mixed with
// the monitor's events, driven into two IvshmemDevices at once — one on the WebAssembly core
// (release build), one on its TypeScript twin — in all three modes and several vector counts.
// After every operation: no exception escaped a guest access, both devices returned the same
// result and made the same host calls in the same order, the counters add up to what the
// operation could do, pending bits are set only for masked vectors, the INTx pin follows the
// status bit and is reported only on change, and read-only registers kept their values (the
// checks are in support/fuzz-run.ts, the operations in support/hostile-guest.ts).
// IVSHMEM_FUZZ_SEED and IVSHMEM_FUZZ_OPS (guest accesses, in total) replay or scale a run. A small
// fast-check layer on top runs short sequences (one op per seed) that shrink when they fail.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { emptyCoverage, FuzzRun, makeSide } from '../support/fuzz-run.js';
import type { Coverage, Setup } from '../support/fuzz-run.js';
import type { FuzzMode } from '../support/hostile-guest.js';

const BASE_SEED =
  process.env.IVSHMEM_FUZZ_SEED !== undefined
    ? Number(process.env.IVSHMEM_FUZZ_SEED) >>> 0
    : (Date.now() ^ (process.pid << 16)) >>> 0;
const TOTAL = process.env.IVSHMEM_FUZZ_OPS !== undefined ? Number(process.env.IVSHMEM_FUZZ_OPS) : 1_000_000;

// Shares sum to 1 across all setups; doorbell mode has the most state and gets the most.
const SETUPS: Setup[] = [
  { mode: 'plain', id: 0, master: 'on', size: 4096, weight: 0.08 },
  { mode: 'plain', id: 0, master: 'off', size: 1 << 20, weight: 0.06 },
  { mode: 'doorbell', vectors: 1, id: 0, master: 'on', size: 4096, weight: 0.08 },
  { mode: 'doorbell', vectors: 2, id: 3, master: 'off', size: 4096, weight: 0.08 },
  { mode: 'doorbell', vectors: 64, id: 0, master: 'on', size: 8192, weight: 0.1 },
  { mode: 'doorbell', vectors: 128, id: 0, master: 'on', size: 4096, weight: 0.1 },
  { mode: 'doorbell', vectors: 200, id: 0, master: 'on', size: 4096, weight: 0.1 },
  { mode: 'doorbell', vectors: 300, id: 0, master: 'on', size: 4096, weight: 0.1 },
  { mode: 'intx', vectors: 1, id: 0, master: 'on', use64: false, size: 4096, weight: 0.08 },
  { mode: 'intx', vectors: 2, id: 5, master: 'off', size: 4096, weight: 0.08 },
  { mode: 'intx', vectors: 64, id: 0, master: 'on', size: 4096, weight: 0.07 },
  { mode: 'intx', vectors: 200, id: 0, master: 'on', use64: false, size: 4096, weight: 0.07 },
];

// Each setup has its own stream, so one setup's failure replays without running the others first.
function setupSeed(index: number): number {
  return (Math.imul(BASE_SEED ^ 0x9e3779b9, 0x85ebca6b) + Math.imul(index + 1, 0xc2b2ae35)) >>> 0;
}

async function withRun<T>(index: number, seed: number, reproduce: string, body: (run: FuzzRun) => T): Promise<T> {
  const setup = SETUPS[index];
  const a = await makeSide('wasm', setup, 'wasm');
  const b = await makeSide('ts', setup, 'ts');
  try {
    return body(new FuzzRun(setup, index, a, b, seed, reproduce));
  } finally {
    a.device.close();
    b.device.close();
  }
}

async function fuzzMode(mode: FuzzMode): Promise<{ guest: number; ops: number; coverage: Coverage }> {
  let guest = 0;
  let ops = 0;
  const coverage = emptyCoverage();
  const reproduce = `IVSHMEM_FUZZ_SEED=${BASE_SEED} IVSHMEM_FUZZ_OPS=${TOTAL} npx vitest run test/device/hostile-guest.test.ts`;
  for (const [index, setup] of SETUPS.entries()) {
    if (setup.mode !== mode) continue;
    await withRun(index, setupSeed(index), reproduce, (run) => {
      run.run(Math.ceil(TOTAL * setup.weight));
      guest += run.guestAccesses;
      ops += run.operations;
      for (const k of Object.keys(coverage) as (keyof Coverage)[]) coverage[k] += run.coverage[k];
    });
  }
  return { guest, ops, coverage };
}

// What each mode must reach in a full run (smaller runs, set by IVSHMEM_FUZZ_OPS, are not judged).
const MUST_REACH: Record<FuzzMode, (keyof Coverage)[]> = {
  plain: ['invalid', 'mappings', 'noPeer', 'saves', 'loads', 'loadsRefused', 'resets'],
  doorbell: [
    'invalid',
    'mappings',
    'msi',
    'unmaskDeliveries',
    'pended',
    'rings',
    'noPeer',
    'noVector',
    'loopbacks',
    'saves',
    'loads',
    'loadsRefused',
    'resets',
  ],
  intx: [
    'invalid',
    'mappings',
    'irqChanges',
    'rings',
    'noPeer',
    'noVector',
    'loopbacks',
    'saves',
    'loads',
    'loadsRefused',
    'resets',
  ],
};

describe('hostile guest: WebAssembly core vs TypeScript twin through IvshmemDevice', () => {
  it("the setups' shares cover the whole run", () => {
    expect(SETUPS.reduce((n, s) => n + s.weight, 0)).toBeCloseTo(1, 9);
  });
  for (const mode of ['plain', 'doorbell', 'intx'] as const) {
    it(`${mode} mode survives its share of the random guest accesses with both cores agreeing`, async () => {
      const started = performance.now();
      const { guest, ops, coverage } = await fuzzMode(mode);
      console.log(
        `fuzz ${mode}: ${guest} guest accesses, ${ops} operations in ${((performance.now() - started) / 1000).toFixed(1)} s (IVSHMEM_FUZZ_SEED=${BASE_SEED}); reached ${JSON.stringify(coverage)}`,
      );
      const share = SETUPS.filter((s) => s.mode === mode).reduce((n, s) => n + Math.ceil(TOTAL * s.weight), 0);
      expect(guest).toBeGreaterThanOrEqual(share);
      if (TOTAL >= 1_000_000) {
        const missed = MUST_REACH[mode].filter((k) => coverage[k] === 0);
        expect(missed, `never reached (IVSHMEM_FUZZ_SEED=${BASE_SEED})`).toEqual([]);
      }
    }, 180_000);
  }

  it('short sequences agree, and shrink to a minimal one on failure', async () => {
    const property = fc.asyncProperty(
      fc.integer({ min: 0, max: SETUPS.length - 1 }),
      fc.array(fc.integer({ min: 0, max: 0xffffffff }), { minLength: 1, maxLength: 300 }),
      (index, seeds) =>
        withRun(index, 1, `IVSHMEM_FUZZ_SEED=${BASE_SEED} (the fast-check layer shrinks it)`, (run) =>
          run.runSeeds(seeds),
        ),
    );
    const out = await fc.check(property, { numRuns: 200, seed: BASE_SEED | 0 });
    if (out.failed) {
      const cause = out.errorInstance instanceof Error ? out.errorInstance.message : String(out.errorInstance);
      throw new Error(
        `shrunk to ${JSON.stringify(out.counterexample)} (reproduce with IVSHMEM_FUZZ_SEED=${BASE_SEED}):\n${cause.slice(0, 4000)}`,
      );
    }
  }, 120_000);
});
