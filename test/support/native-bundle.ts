// The native wrappers (src/os/*.ts) as one plain ES module (see bundle.ts), for worker
// threads and child processes.
import { bundleModule } from './bundle.js';

/** Absolute path of the bundle, which exports native(), EventFd, SharedMemory, UnixSocket, createWaiter. */
export function nativeBundle(): string {
  return bundleModule(
    'native',
    ['binding', 'eventfd', 'shared-memory', 'unix-socket', 'waiter'].map((m) => `export * from './src/os/${m}.ts';`),
  );
}
