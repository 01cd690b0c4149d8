// The KVM monitor (src/monitors/kvm/*.ts, with the device and the WebAssembly core it pulls in) and the test
// guests as one plain ES module (see bundle.ts), for child processes and worker threads.
import { bundleModule } from './bundle.js';

/**
 * Absolute path of the bundle, which exports Kvm, KvmMonitor, MONITOR_DONE_PORT, everything of kvm-guest.ts, the MSI-X
 * guest and runPingPongPeer.
 */
export function kvmBundle(): string {
  return bundleModule('kvm', [
    "export { Kvm } from './src/monitors/kvm/kvm.ts';",
    "export { KvmMonitor, MONITOR_DONE_PORT } from './src/monitors/kvm/monitor.ts';",
    "export * from './test/support/kvm-guest.ts';",
    "export { buildMsiGuest, loadMsiGuest, MSI_VECTOR } from './test/support/kvm-msi-guest.ts';",
    "export { runPingPongPeer } from './test/support/kvm-pingpong.ts';",
  ]);
}
