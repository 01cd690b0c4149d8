// A shared memory object and its one mapping: POSIX shm by name (the object QEMU opens as
// memory-backend-file,mem-path=/dev/shm/NAME,share=on), a file, a memfd, or an unlinked file in a
// directory (a hugetlbfs mount, as QEMU's server does with -m).
import { constants as bufferConstants } from 'node:buffer';
import { unlinkSync } from 'node:fs';
import { IvshmemError } from '../errors.js';
import { native } from './binding.js';
import { checkAdoptable } from './fd-kind.js';
import { FdHandle } from './handle.js';
import { MAX_MAPPING } from './memory-source.js';
import type { CreateOptions, SharedMemorySource } from './memory-source.js';

export { MAX_MAPPING, isSharedMemorySource } from './memory-source.js';
export type { CreateOptions, SharedMemorySource } from './memory-source.js';

export interface OpenOptions extends CreateOptions {
  /** Bytes wanted. A new (empty) object grows to it; a smaller non-empty one is refused. */
  size?: number;
}

// <linux/fcntl.h>
const F_SEAL_SEAL = 0x0001;
const F_SEAL_SHRINK = 0x0002;

/** The most one mapping can hand to JavaScript as an ArrayBuffer: the runtime's limit for
 *  external memory (4 GiB on Node 20, far more from Node 22 on), below MAX_MAPPING. */
export const MAX_BUFFER_BYTES = Math.min(MAX_MAPPING, bufferConstants.MAX_LENGTH);

export function shmName(name: string): string {
  return name.startsWith('/') ? name : `/${name}`;
}

export class SharedMemory extends FdHandle {
  readonly source: SharedMemorySource;
  readonly size: number;
  /** open() made the name (a shm object or a file) that did not exist: removeCreatedName() may undo it. */
  readonly createdName: boolean;
  #buffer: ArrayBuffer | undefined;
  #nameRemoved = false;

  private constructor(fd: number, source: SharedMemorySource, size: number, createdName = false) {
    super(fd);
    this.source = source;
    this.size = size;
    this.createdName = createdName;
  }

  /** Opens or creates the object, checks and settles its size, and maps nothing yet. */
  static open(source: SharedMemorySource, options: OpenOptions = {}): SharedMemory {
    const n = native();
    const create = options.create ?? source.create ?? 'if-missing';
    const mode = options.mode ?? source.mode ?? 0o600;
    const seal = options.seal ?? source.seal ?? false;
    if (options.size !== undefined) checkSize(options.size, 'size');
    // Without a size a new object could only be refused as empty: only open an existing one, so
    // a refusal never leaves an empty object behind under the name.
    if (options.size === undefined && create !== 'never' && ('shm' in source || 'path' in source)) {
      if (create === 'always')
        throw new IvshmemError('ERR_IVSHMEM_INVALID_SIZE', 'no size was given for the object to create');
      return SharedMemory.open(source, { ...options, create: 'never' });
    }
    let fd: number;
    let created = false;
    if ('shm' in source || 'path' in source) {
      // Exclusive first, so we know whether the name is ours: a failure below removes only that.
      const openNamed = (create: boolean, exclusive: boolean) =>
        'shm' in source
          ? n.shmOpen(shmName(source.shm), create, exclusive, mode)
          : n.openFile(source.path, create, exclusive, mode);
      if (create === 'never') fd = openNamed(false, false);
      else {
        try {
          fd = openNamed(true, true);
          created = true;
        } catch (err) {
          if (create === 'always' || (err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
          fd = openNamed(false, false);
        }
      }
    } else if ('memfd' in source) {
      fd = n.memfdCreate(source.memfd, seal);
    } else if ('hugetlbfs' in source) {
      fd = n.tempFileIn(source.hugetlbfs);
    } else {
      throw new IvshmemError('ERR_IVSHMEM_INVALID_OPTION', 'memory must name one of shm, path, memfd or hugetlbfs');
    }
    try {
      const size = settleSize(fd, options.size);
      if (seal && 'memfd' in source) n.sealShrink(fd);
      return new SharedMemory(fd, source, size, created);
    } catch (err) {
      if (created) removeName(source);
      n.close(fd);
      throw err;
    }
  }

  /** Takes ownership of an fd received from a server, sized by fstat. */
  static adopt(fd: number, source: SharedMemorySource = { memfd: 'received' }): SharedMemory {
    checkAdoptable(fd, 'memory', 'SharedMemory');
    const size = native().fstat(fd).size;
    return new SharedMemory(fd, source, size);
  }

  /**
   * Seals an object received from someone else against shrinking, when it can still take seals
   * (a memfd made with MFD_ALLOW_SEALING and not F_SEAL_SEAL'ed). Returns whether it is sealed
   * now: if not (a POSIX shm object, a file), whoever holds it can truncate it and turn our
   * accesses past the new end into SIGBUS.
   */
  static sealAgainstShrinking(fd: number): boolean {
    const n = native();
    const seals = n.fileSeals(fd);
    if (seals < 0) return false;
    if ((seals & F_SEAL_SHRINK) !== 0) return true;
    if ((seals & F_SEAL_SEAL) !== 0) return false;
    n.sealShrink(fd);
    return true;
  }

  /** The MAP_SHARED mapping of the whole object, made on first use. */
  map(): ArrayBuffer {
    if (this.#buffer === undefined && this.size > MAX_BUFFER_BYTES) {
      throw new IvshmemError(
        'ERR_IVSHMEM_INVALID_SIZE',
        `${this.size} bytes cannot be mapped as one ArrayBuffer: Node ${process.version} allows at most ${MAX_BUFFER_BYTES}`,
      );
    }
    if (this.#buffer === undefined) this.#buffer = native().mmap(this.fd, this.size);
    return this.#buffer;
  }

  /** Unmaps (the ArrayBuffer is detached first, so it reads as empty rather than faulting). */
  unmap(): void {
    if (this.#buffer === undefined) return;
    native().munmap(this.#buffer);
    this.#buffer = undefined;
  }

  /** Removes the name of a POSIX shm object or file; the memory lives on while mapped or open. */
  unlink(): void {
    if ('shm' in this.source) native().shmUnlink(shmName(this.source.shm));
    else if ('path' in this.source) {
      throw new IvshmemError('ERR_IVSHMEM_INVALID_OPTION', 'unlink a file-backed object with fs.unlink');
    }
  }

  /** Undoes what open() created: removes the name if open() made it (a failed setup must not leave
   *  an object behind). Does nothing for a name that existed before, or once removed. */
  removeCreatedName(): void {
    if (!this.createdName || this.#nameRemoved) return;
    this.#nameRemoved = true;
    removeName(this.source);
  }

  protected override beforeClose(): void {
    this.unmap();
  }
}

// The name of a shm object or file this process created (memfds and hugetlbfs files have none).
function removeName(source: SharedMemorySource): void {
  try {
    if ('shm' in source) native().shmUnlink(shmName(source.shm));
    else if ('path' in source) unlinkSync(source.path);
  } catch {
    // someone removed it already: nothing of ours is left under the name
  }
}

function checkSize(size: number, what: string): void {
  if (!Number.isSafeInteger(size) || size < 0) {
    throw new IvshmemError('ERR_IVSHMEM_INVALID_SIZE', `${what} ${size} is not a byte count`);
  }
  if (size >= MAX_MAPPING) {
    throw new IvshmemError('ERR_IVSHMEM_INVALID_SIZE', `${what} ${size} is beyond the address space (2^47 bytes)`);
  }
}

// QEMU's memory-backend-file rule: an empty object takes the requested size; a non-empty one
// must be at least that large and is used from its start.
function settleSize(fd: number, wanted: number | undefined): number {
  const n = native();
  const actual = n.fstat(fd).size;
  if (wanted === undefined) {
    if (actual === 0)
      throw new IvshmemError('ERR_IVSHMEM_INVALID_SIZE', 'the memory object is empty and no size was given');
    checkSize(actual, 'object size');
    return actual;
  }
  if (wanted === 0) throw new IvshmemError('ERR_IVSHMEM_INVALID_SIZE', 'size is 0: BAR2 needs memory');
  if (actual === 0) {
    n.ftruncate(fd, wanted);
    return wanted;
  }
  if (actual < wanted) {
    throw new IvshmemError(
      'ERR_IVSHMEM_INVALID_SIZE',
      `the memory object has ${actual} bytes, fewer than the ${wanted} requested`,
    );
  }
  return wanted;
}
