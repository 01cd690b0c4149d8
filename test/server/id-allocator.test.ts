// Peer ids as QEMU's server allocates them: round-robin over 16 bits, skipping ids in use, and
// none at all when every id is taken.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IdAllocator } from '../../src/server/id-allocator.js';

describe('id allocation', () => {
  it('goes round-robin, skips ids in use, wraps at 65536', () => {
    const ids = new IdAllocator();
    const used = new Set<number>();
    const take = () => {
      const id = ids.allocate((i) => used.has(i));
      used.add(id);
      return id;
    };
    expect([take(), take(), take()]).toEqual([0, 1, 2]);
    used.delete(0);
    expect(take()).toBe(3); // not 0: the counter moves on
    for (let i = 4; i < 65536; i++) take();
    expect(take()).toBe(0); // wrapped around to the one free id
  });

  it('refuses when all 65,536 ids are in use', () => {
    expect(new IdAllocator().allocate(() => true)).toBe(-1);
  });

  it('starts where told, wraps from 65535 to 0, and reuses freed ids only after coming round', () => {
    const ids = new IdAllocator(65534);
    const used = new Set<number>();
    const take = () => {
      const id = ids.allocate((i) => used.has(i));
      if (id >= 0) used.add(id);
      return id;
    };
    expect([take(), take(), take(), take()]).toEqual([65534, 65535, 0, 1]);
    used.delete(65535);
    used.delete(0);
    expect(take()).toBe(2); // freed ids wait their turn
    for (let i = 3; i < 65534; i++) expect(take()).toBe(i);
    // Round again: 65534 and 1 are in use; the freed 65535 and 0 come back, in order.
    expect([take(), take()]).toEqual([65535, 0]);
    expect(take()).toBe(-1); // now every id is in use
    used.delete(40000);
    expect(take()).toBe(40000);
  });

  it('refuses a start outside 0..65535', () => {
    for (const bad of [-1, 65536, 1.5, Number.NaN])
      expect(() => new IdAllocator(bad)).toThrow(expect.objectContaining({ code: 'ERR_IVSHMEM_INVALID_OPTION' }));
  });

  it('always gives the first free id at or after the counter, cyclically (model check)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0xffff }),
        fc.array(fc.oneof(fc.constant<'take'>('take'), fc.integer({ min: 0, max: 0xffff })), { maxLength: 200 }),
        fc.uniqueArray(fc.integer({ min: 0, max: 0xffff }), { maxLength: 50 }),
        (first, steps, initiallyUsed) => {
          const ids = new IdAllocator(first);
          const used = new Set(initiallyUsed);
          let next = first;
          for (const step of steps) {
            if (step !== 'take') {
              used.delete(step);
              continue;
            }
            let expected = -1;
            for (let k = 0; k < 65536; k++) {
              const c = (next + k) & 0xffff;
              if (!used.has(c)) {
                expected = c;
                next = (c + 1) & 0xffff;
                break;
              }
            }
            const got = ids.allocate((i) => used.has(i));
            expect(got).toBe(expected);
            used.add(got);
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});
