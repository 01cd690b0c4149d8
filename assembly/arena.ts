// Linear-memory arena for the tables whose size is only known at run time (MSI-X table, PBA,
// route table). The AssemblyScript stub runtime is never asked for memory: blocks come from
// power-of-two size classes with free lists, so peers that leave give their blocks to peers that
// join, and memory grows only with the number of peers present at once.

const MIN_CLASS: u32 = 4; // 16 bytes
const CLASS_COUNT: u32 = 32;

// Heads of the free lists, one per size class; a free block stores the next block's address in
// its first word.
const freeHeads: usize = memory.data(CLASS_COUNT << 2);
let top: usize = 0;

function classOf(bytes: u32): u32 {
  const c: u32 = bytes <= 16 ? MIN_CLASS : 32 - clz(bytes - 1);
  return c;
}

/** Returns a zeroed block of at least `bytes` bytes. */
export function alloc(bytes: u32): usize {
  if (top == 0) top = (__heap_base + 15) & ~(<usize>15);
  const c = classOf(bytes);
  const size = <usize>1 << c;
  const headAt = freeHeads + (<usize>c << 2);
  let block = <usize>load<u32>(headAt);
  if (block != 0) {
    store<u32>(headAt, load<u32>(block));
  } else {
    block = top;
    top += size;
    const needPages = <i32>((top + 0xffff) >>> 16);
    const havePages = memory.size();
    if (needPages > havePages && memory.grow(needPages - havePages) < 0) {
      unreachable();
    }
  }
  memory.fill(block, 0, size);
  return block;
}

/** Gives a block obtained from alloc(bytes) back to its size class. */
export function free(block: usize, bytes: u32): void {
  const headAt = freeHeads + (<usize>classOf(bytes) << 2);
  store<u32>(block, load<u32>(headAt));
  store<u32>(headAt, <u32>block);
}
