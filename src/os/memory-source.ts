// Where a device's shared memory can come from, and the largest mapping there can be: the
// names and checks of os/shared-memory.ts that need neither the addon nor Node's I/O, so that
// option checking (device/options.ts) also runs in a browser.
export interface CreateOptions {
  /** 'always' fails if the object exists; 'if-missing' (default) opens or creates; 'never' only opens. */
  create?: 'always' | 'if-missing' | 'never';
  /** Permission bits for a created object. Default 0o600. */
  mode?: number;
  /** memfd only: forbid shrinking the object (F_SEAL_SHRINK), so no peer can make us fault. */
  seal?: boolean;
}

/** Where shared memory comes from; `shm` is a POSIX name ("x" and "/x" are /dev/shm/x). */
export type SharedMemorySource = CreateOptions &
  ({ shm: string } | { path: string } | { memfd: string } | { hugetlbfs: string });

export function isSharedMemorySource(value: unknown): value is SharedMemorySource {
  return (
    typeof value === 'object' &&
    value !== null &&
    ['shm', 'path', 'memfd', 'hugetlbfs'].some((k) => typeof (value as Record<string, unknown>)[k] === 'string')
  );
}

/** x86-64 user space is 47 bits: nothing larger can ever be mapped. */
export const MAX_MAPPING = 2 ** 47;
