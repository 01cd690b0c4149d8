// What DeviceModel needs of the bus side of a device: the regions it decodes and where, the
// control bits the core takes from it, and its part of a saved state. The PCI function
// (pci/ivshmem-function.ts) has a configuration space behind this; ivshmem-flat's window
// (flat/flat-window.ts) has fixed addresses and nothing to configure.

/** One region the guest reaches: a PCI BAR, or (flat) the register window or the memory. */
export interface BarInfo {
  readonly index: number;
  readonly size: number;
  readonly type: 'mem32' | 'mem64';
  readonly prefetchable: boolean;
}

export interface BusFunction {
  /** The regions the guest reaches: 0 registers, 1 the MSI-X table (PCI doorbell mode), 2 the memory. */
  readonly bars: readonly BarInfo[];
  /** Whether the guest has a configuration space to read and write. */
  readonly hasConfigSpace: boolean;
  read(offset: number, size: number, intxAsserted: boolean): number;
  write(offset: number, size: number, value: number): void;
  /** The core's control word (CTRL_* bits). */
  controlFlags(): number;
  /** Where region `index` decodes now, or null. */
  barAddress(index: number): bigint | null;
  reset(): void;
  /** The bus side's bytes in a saved state (256, as a PCI configuration space). */
  snapshot(): Uint8Array;
  /** The first byte of `bytes` a state load must not change, or -1. */
  readOnlyMismatch(bytes: Uint8Array): number;
  restore(bytes: Uint8Array): void;
}
