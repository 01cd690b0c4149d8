// IvshmemDevice with the native wrappers as one plain ES module (see bundle.ts), for child
// processes that must run the device itself (a test whose failure mode is a fatal signal runs
// there, so it kills the child instead of vitest; a hand-over needs a second process).
import { bundleModule } from './bundle.js';

/** Absolute path of the bundle, which exports IvshmemDevice, native, UnixListener and UnixSocket. */
export function deviceBundle(): string {
  return bundleModule('device', [
    "export { IvshmemDevice } from './src/device/device.ts';",
    "export { native } from './src/os/binding.ts';",
    "export { UnixListener, UnixSocket } from './src/os/unix-socket.ts';",
  ]);
}
