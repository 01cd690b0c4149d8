// Peer ids as QEMU's server allocates them: round-robin over 16 bits, skipping ids in use, and
// none at all when every id is taken.
import { describe, expect, it } from 'vitest';
import { IdAllocator } from '../src/server/id-allocator.js';

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
});
