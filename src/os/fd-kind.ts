// What an fd number handed to us from outside refers to, checked before a handle takes it over:
// adopting a number that is not open, or that is the terminal or a pipe (0, 1, 2 in most
// processes), would make the handle's close() close someone else's descriptor.
import { readlinkSync } from 'node:fs';
import { describeValue, IvshmemError } from '../errors.js';
import { native } from './binding.js';

/** What /proc says the fd is ("anon_inode:[eventfd]", "/dev/shm/x", "pipe:[…]"), or undefined
 *  when it is not open. */
export function fdTarget(fd: number): string | undefined {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return undefined;
  }
}

/** What fstat(2) says of the fd: its size, whether it is a regular file, and its identity. */
export function fdStat(fd: number): { size: number; isFile: boolean; ino: number; dev: number } {
  return native().fstat(fd);
}

/** Throws a coded error unless `fd` is an open descriptor of `kind`. */
export function checkAdoptable(fd: unknown, kind: 'eventfd' | 'memory', owner: string): asserts fd is number {
  if (typeof fd !== 'number' || !Number.isInteger(fd) || fd < 0 || fd > 0x7fffffff) {
    throw new IvshmemError(
      'ERR_IVSHMEM_INVALID_FD',
      `${owner}.adopt: fd must be an open file descriptor, got ${describeValue(fd)}`,
    );
  }
  const target = fdTarget(fd);
  if (target === undefined) throw new IvshmemError('ERR_IVSHMEM_INVALID_FD', `${owner}.adopt: fd ${fd} is not open`);
  const fits = kind === 'eventfd' ? target === 'anon_inode:[eventfd]' : native().fstat(fd).isFile;
  if (!fits) {
    const wants =
      kind === 'eventfd' ? 'an eventfd' : 'shared memory (a regular file: memfd, /dev/shm, tmpfs, hugetlbfs)';
    throw new IvshmemError('ERR_IVSHMEM_INVALID_FD', `${owner}.adopt: fd ${fd} is ${target}, not ${wants}`);
  }
}
