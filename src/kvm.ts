// The package's `ivshmem-ts/kvm` entry: the reference KVM monitor that embeds IvshmemDevice
// (src/monitors/kvm/monitor.ts) and the minimal /dev/kvm bindings under it (src/monitors/kvm/kvm.ts). Linux only;
// a starting point for a TypeScript VMM rather than a VMM: one vCPU, real mode, a PC-style PCI
// host bridge. The device API in the main entry is the stable one.
export {
  Kvm,
  KvmVm,
  KvmVcpu,
  VcpuKicker,
  KVM_CAP,
  KVM_EXIT,
  KVM_IRQCHIP,
  KVM_RUN_INTERRUPTED,
} from './monitors/kvm/kvm.js';
export type { GsiRoute, KvmExit, KvmIoExit, KvmMmioExit } from './monitors/kvm/kvm.js';
export {
  KvmMonitor,
  KvmMonitorError,
  MONITOR_DONE_PORT,
  PCI_CONFIG_ADDRESS,
  PCI_CONFIG_DATA,
} from './monitors/kvm/monitor.js';
export type { KvmMonitorOptions, MonitorRunResult, MonitorStats } from './monitors/kvm/monitor.js';
export type { IoeventfdRoute } from './monitors/kvm/ioeventfd-routes.js';
export type { IrqfdRoute } from './monitors/kvm/irqfd-routes.js';
