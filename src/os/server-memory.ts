// The shared memory an ivshmem server hands to its peers, and the rules that keep one server
// from hurting another's: a POSIX object is created exclusively, or else taken only as it is;
// a server never resizes or removes a name it did not create; and while a server lives it holds
// a lock on the object, so a second server given the same name refuses to start instead of
// serving the same memory (or pulling it from under the first one's peers).
import { IvshmemError } from '../errors.js';
import { native } from './binding.js';
import { SharedMemory, shmName } from './shared-memory.js';

export type ServerMemorySource = { shm: string } | { hugetlbfs: string };

/** The smallest object the server offers: peers such as QEMU map it in whole pages. */
export const MIN_SERVER_SIZE = 4096;
/** The largest: what a device can map (x86-64 user space is 47 bits; half of it is generous). */
export const MAX_SERVER_SIZE = 2 ** 46;
/** hugetlbfs may need a larger multiple of its page size: doubling stops here, as QEMU's does. */
const MAX_DOUBLING = 2 ** 30;

export class ServerMemory {
  readonly memory: SharedMemory;
  readonly source: ServerMemorySource;
  /** This server (or the one it took over from) created the POSIX name, so it removes it. */
  readonly createdName: boolean;
  #lock: number;

  private constructor(memory: SharedMemory, source: ServerMemorySource, createdName: boolean, lock: number) {
    this.memory = memory;
    this.source = source;
    this.createdName = createdName;
    this.#lock = lock;
  }

  /** The size the server gives a request: QEMU rounds up to a power of two. Throws a coded error
   *  for a size no peer could use. */
  static sizeFor(requested: number): number {
    if (typeof requested !== 'number' || !Number.isSafeInteger(requested) || requested <= 0) {
      throw new IvshmemError(
        'ERR_IVSHMEM_INVALID_SIZE',
        `size ${String(requested)} is not a positive whole number of bytes`,
      );
    }
    if (requested < MIN_SERVER_SIZE) {
      throw new IvshmemError(
        'ERR_IVSHMEM_INVALID_SIZE',
        `size ${requested} is below ${MIN_SERVER_SIZE} bytes: peers map shared memory in whole pages`,
      );
    }
    const size = 2 ** Math.ceil(Math.log2(requested));
    if (size > MAX_SERVER_SIZE) {
      throw new IvshmemError(
        'ERR_IVSHMEM_INVALID_SIZE',
        `size ${requested} is above the ${MAX_SERVER_SIZE} bytes (64 TiB) a device can map`,
      );
    }
    return size;
  }

  /** Creates the object, or takes an existing one of exactly the size asked for that no live
   *  server holds. Nothing is left behind on a throw. */
  static open(source: ServerMemorySource, requested: number): ServerMemory {
    const size = ServerMemory.sizeFor(requested);
    const { fd, created, lock } = 'shm' in source ? openNamed(source, size) : openUnlinked(source, size);
    return new ServerMemory(SharedMemory.adopt(fd, source), source, created, lock);
  }

  /** The memory a server handed over: `lock` (or -1) and `createdName` travel with it. */
  static adopt(fd: number, source: ServerMemorySource, lock: number, createdName: boolean): ServerMemory {
    return new ServerMemory(SharedMemory.adopt(fd, source), source, createdName, lock);
  }

  /** The lock's fd, for a hand-over (-1 for memory without a name). */
  get lockFd(): number {
    return this.#lock;
  }

  /** Gives the fds up to a caller (a failed adoption); neither is closed. */
  release(): void {
    this.memory.release();
    this.#lock = -1;
  }

  /** Closes the memory and the lock; removes the name when this server created it and the name
   *  still refers to this object (someone may have replaced it meanwhile). Idempotent. */
  close(): void {
    if (this.memory.closed) return;
    if (this.createdName && 'shm' in this.source) removeIfSame(shmName(this.source.shm), this.memory.fd);
    this.closeKeepingName();
  }

  /** Closes our fds and leaves the name: a successor that took the server over serves it now
   *  (it holds a duplicate of the lock, so the lock holds on too). Idempotent. */
  closeKeepingName(): void {
    this.memory.close();
    if (this.#lock >= 0) native().close(this.#lock);
    this.#lock = -1;
  }
}

interface Opened {
  fd: number;
  created: boolean;
  lock: number;
}

function openNamed(source: { shm: string }, size: number): Opened {
  const n = native();
  const name = shmName(source.shm);
  let fd: number;
  let created = true;
  try {
    fd = n.shmOpen(name, true, true, 0o700);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    fd = n.shmOpen(name, false, false, 0);
    created = false;
  }
  let lock = -1;
  try {
    // The lock sits on a description of its own that never leaves this process: peers get
    // duplicates of `fd`, and a lock on that would outlive us in every one of them.
    lock = n.shmOpen(name, false, false, 0);
    if (!lockWithin(lock, created ? 50 : 0)) {
      throw new IvshmemError(
        'ERR_IVSHMEM_IN_USE',
        `the shared memory object ${name} is in use by another running ivshmem server: give this one another name (-M)`,
      );
    }
    const actual = n.fstat(fd).size;
    if (created) n.ftruncate(fd, size);
    else if (actual !== size) {
      throw new IvshmemError(
        'ERR_IVSHMEM_INVALID_SIZE',
        `the shared memory object ${name} exists with ${actual} bytes, not ${size}; it was not created by this server, so it is left as it is: ask for its size, or remove /dev/shm${name} first`,
      );
    }
    return { fd, created, lock };
  } catch (err) {
    if (created) removeIfSame(name, fd);
    n.close(fd);
    if (lock >= 0) n.close(lock);
    throw err;
  }
}

function openUnlinked(source: { hugetlbfs: string }, requested: number): Opened {
  const n = native();
  const fd = n.tempFileIn(source.hugetlbfs);
  try {
    for (let size = requested; ; size *= 2) {
      try {
        n.ftruncate(fd, size);
        break;
      } catch (err) {
        if (size >= MAX_DOUBLING) throw err;
      }
    }
    return { fd, created: true, lock: -1 };
  } catch (err) {
    n.close(fd);
    throw err;
  }
}

// The creator races only a second server that found the fresh name and is checking it (it
// holds the lock for a few system calls, then refuses the empty object): wait that out.
function lockWithin(fd: number, ms: number): boolean {
  const deadline = Date.now() + ms;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    if (native().tryLock(fd)) return true;
    if (Date.now() >= deadline) return false;
    Atomics.wait(pause, 0, 0, 1);
  }
}

function removeIfSame(name: string, fd: number): void {
  const n = native();
  let other = -1;
  try {
    other = n.shmOpen(name, false, false, 0);
    const a = n.fstat(fd);
    const b = n.fstat(other);
    if (a.ino === b.ino && a.dev === b.dev) n.shmUnlink(name);
  } catch {
    // gone already, or not ours to judge: leave it
  } finally {
    if (other >= 0) n.close(other);
  }
}
