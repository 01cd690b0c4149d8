// What a server may hand us, checked at receipt. QEMU takes any fd: a vector that is a pipe or a
// socket only fails later (a doorbell write that blocks once a pipe fills, a watcher that spins on
// a socket at end of stream), and shared memory that the server truncates after we mapped it
// kills the process with SIGBUS on the next access. Checking costs one readlink or fstat per fd,
// so we refuse what cannot work instead of discovering it later:
// - a vector must be an eventfd; it is made non-blocking (its open file description is shared
//   with the server, which may have made it blocking), so a doorbell never stalls the event loop;
// - shared memory must be a non-empty regular file (memfd, /dev/shm, tmpfs, hugetlbfs); a memfd
//   that still takes seals is sealed against shrinking, so the server can no longer truncate it;
//   memory that cannot be sealed (POSIX shm, as QEMU's own server sends) is accepted, as QEMU
//   does, unless the caller requires sealed memory.
import { IvshmemError } from '../errors.js';
import { setNonBlocking } from '../os/handle.js';
import { fdStat, fdTarget as openFdTarget } from '../os/fd-kind.js';
import { MAX_MAPPING, SharedMemory } from '../os/shared-memory.js';

export type ReceivedFdKind = 'memory' | 'eventfd';

export interface ReceivedFdPolicy {
  /** Refuse shared memory that cannot be sealed against shrinking. */
  requireSealedMemory?: boolean;
}

/** Throws a coded IvshmemError for an fd that cannot serve as `kind`; the caller closes it. */
export function checkReceivedFd(fd: number, kind: ReceivedFdKind, policy: ReceivedFdPolicy = {}): void {
  if (kind === 'eventfd') {
    const target = fdTarget(fd);
    if (target !== 'anon_inode:[eventfd]') {
      throw new IvshmemError('ERR_IVSHMEM_PROTOCOL_FD', `server sent ${target} where an eventfd belongs`);
    }
    setNonBlocking(fd);
    return;
  }
  // Seal first, then size: what we measure can then no longer shrink under us.
  const sealed = fdStat(fd).isFile && SharedMemory.sealAgainstShrinking(fd);
  const { size, isFile } = fdStat(fd);
  if (!isFile) {
    throw new IvshmemError(
      'ERR_IVSHMEM_PROTOCOL_FD',
      `server sent ${fdTarget(fd)} where shared memory (a regular file) belongs`,
    );
  }
  if (size <= 0 || size >= MAX_MAPPING) {
    throw new IvshmemError('ERR_IVSHMEM_PROTOCOL_SHM', `server sent shared memory of ${size} bytes`);
  }
  if (policy.requireSealedMemory && !sealed) {
    throw new IvshmemError(
      'ERR_IVSHMEM_PROTOCOL_SHM',
      'server sent shared memory that cannot be sealed against shrinking (requireSealedMemory)',
    );
  }
}

function fdTarget(fd: number): string {
  return openFdTarget(fd) ?? `fd ${fd} (unreadable)`;
}
