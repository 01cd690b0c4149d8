// The ivshmem PCI function's configuration space: identity, BARs and the MSI-X capability laid out
// as QEMU lays them out for ivshmem-plain, ivshmem-doorbell and the seed's INTx device, and the
// control bits the device core needs from it.
import { CTRL_BUS_MASTER, CTRL_INTX_DISABLE, CTRL_MSIX_ENABLE, CTRL_MSIX_MASKALL } from '../../core/abi.js';
import type { BarInfo, BusFunction } from '../bus-function.js';
import { ConfigSpace } from './config-space.js';
import {
  IVSHMEM_DEVICE_ID,
  IVSHMEM_SUBSYSTEM_ID,
  IVSHMEM_SUBSYSTEM_VENDOR_ID,
  IVSHMEM_VENDOR_ID,
  PCI_BASE_ADDRESS_0,
  PCI_BASE_ADDRESS_MEM_PREFETCH,
  PCI_BASE_ADDRESS_MEM_TYPE_64,
  PCI_CACHE_LINE_SIZE,
  PCI_CAP_ID_MSIX,
  PCI_CAPABILITY_LIST,
  PCI_CLASS_DEVICE,
  PCI_CLASS_MEMORY_RAM,
  PCI_COMMAND,
  PCI_COMMAND_INTX_DISABLE,
  PCI_COMMAND_IO,
  PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY,
  PCI_COMMAND_SERR,
  PCI_CONFIG_HEADER_SIZE,
  PCI_CONFIG_SPACE_SIZE,
  PCI_DEVICE_ID,
  PCI_INTERRUPT_LINE,
  PCI_INTERRUPT_PIN,
  PCI_MSIX_CAP_SIZE,
  PCI_MSIX_FLAGS,
  PCI_MSIX_FLAGS_ENABLE,
  PCI_MSIX_FLAGS_MASKALL,
  PCI_MSIX_PBA,
  PCI_MSIX_TABLE,
  PCI_REVISION_ID,
  PCI_STATUS,
  PCI_STATUS_CAP_LIST,
  PCI_STATUS_INTERRUPT,
  PCI_STATUS_W1C,
  PCI_SUBSYSTEM_ID,
  PCI_SUBSYSTEM_VENDOR_ID,
  PCI_VENDOR_ID,
} from './registers.js';

export type DeviceMode = 'plain' | 'doorbell' | 'intx' | 'flat';

export type { BarInfo } from '../bus-function.js';

export interface FunctionLayout {
  mode: DeviceMode;
  vectors: number;
  bar2Size: number;
  use64: boolean;
  msixBarSize: number;
  msixPbaOffset: number;
  /** The Subsystem ID the guest reads (region identity); QEMU's 0x1100 by default. */
  subsystemId?: number;
}

/** Where QEMU's capability allocator puts the first capability. */
export const MSIX_CAP_OFFSET = PCI_CONFIG_HEADER_SIZE;

export class IvshmemFunction implements BusFunction {
  readonly config = new ConfigSpace();
  readonly hasConfigSpace = true;
  readonly bars: readonly BarInfo[];
  readonly msix: boolean;

  constructor(readonly layout: FunctionLayout) {
    this.msix = layout.mode === 'doorbell';
    const bars: BarInfo[] = [{ index: 0, size: 256, type: 'mem32', prefetchable: false }];
    if (this.msix) bars.push({ index: 1, size: layout.msixBarSize, type: 'mem32', prefetchable: false });
    bars.push({ index: 2, size: layout.bar2Size, type: layout.use64 ? 'mem64' : 'mem32', prefetchable: layout.use64 });
    this.bars = bars;
    this.#build();
  }

  #build(): void {
    const c = this.config;
    const { mode, vectors } = this.layout;
    c.set16(PCI_VENDOR_ID, IVSHMEM_VENDOR_ID);
    c.set16(PCI_DEVICE_ID, IVSHMEM_DEVICE_ID);
    c.set8(PCI_REVISION_ID, mode === 'intx' ? 0 : 1);
    c.set16(PCI_CLASS_DEVICE, PCI_CLASS_MEMORY_RAM);
    c.set16(PCI_SUBSYSTEM_VENDOR_ID, IVSHMEM_SUBSYSTEM_VENDOR_ID);
    c.set16(PCI_SUBSYSTEM_ID, this.layout.subsystemId ?? IVSHMEM_SUBSYSTEM_ID);
    c.set8(PCI_INTERRUPT_PIN, mode === 'intx' ? 1 : 0);

    c.set16(
      PCI_COMMAND,
      PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE | PCI_COMMAND_SERR,
      c.wmask,
    );
    c.set16(PCI_STATUS, PCI_STATUS_W1C, c.w1cmask);
    c.set8(PCI_CACHE_LINE_SIZE, 0xff, c.wmask);
    c.set8(PCI_INTERRUPT_LINE, 0xff, c.wmask);
    // QEMU leaves the device-specific part of config space writable unless a capability claims it.
    c.wmask.fill(0xff, PCI_CONFIG_HEADER_SIZE, PCI_CONFIG_SPACE_SIZE);

    for (const bar of this.bars) {
      const at = PCI_BASE_ADDRESS_0 + 4 * bar.index;
      c.set32(at, barTypeBits(bar));
      // Address bits above the size are writable; with 64 bits they continue in the next register.
      const sizeMask = BigInt.asUintN(64, ~(BigInt(bar.size) - 1n));
      c.set32(at, Number(sizeMask & 0xffffffffn), c.wmask);
      if (bar.type === 'mem64') c.set32(at + 4, Number(sizeMask >> 32n), c.wmask);
    }

    if (this.msix) {
      const cap = MSIX_CAP_OFFSET;
      c.set8(PCI_CAPABILITY_LIST, cap);
      c.set16(PCI_STATUS, PCI_STATUS_CAP_LIST);
      c.set8(cap, PCI_CAP_ID_MSIX);
      c.set8(cap + 1, 0);
      c.set16(cap + PCI_MSIX_FLAGS, vectors - 1);
      c.set32(cap + PCI_MSIX_TABLE, 0 | 1); // table at offset 0 of BAR1
      c.set32(cap + PCI_MSIX_PBA, this.layout.msixPbaOffset | 1);
      c.wmask.fill(0, cap, cap + PCI_MSIX_CAP_SIZE);
      c.set16(cap + PCI_MSIX_FLAGS, PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL, c.wmask);
    }
  }

  /** PCI reset: every writable bit of the header's command, status and interrupt line is cleared. */
  reset(): void {
    const c = this.config;
    for (const at of [PCI_COMMAND, PCI_COMMAND + 1, PCI_STATUS, PCI_STATUS + 1, PCI_INTERRUPT_LINE]) {
      c.bytes[at] &= ~(c.wmask[at] | c.w1cmask[at]);
    }
    c.bytes[PCI_CACHE_LINE_SIZE] = 0;
    for (const bar of this.bars) {
      const at = PCI_BASE_ADDRESS_0 + 4 * bar.index;
      c.set32(at, barTypeBits(bar));
      if (bar.type === 'mem64') c.set32(at + 4, 0);
    }
    if (this.msix) {
      const at = MSIX_CAP_OFFSET + PCI_MSIX_FLAGS + 1;
      c.bytes[at] &= ~c.wmask[at];
    }
  }

  /** A guest config read of 1, 2 or 4 bytes inside the space; the interrupt status bit is live. */
  read(offset: number, size: number, intxAsserted: boolean): number {
    let value = this.config.read(offset, size);
    if (intxAsserted && offset <= PCI_STATUS && PCI_STATUS < offset + size) {
      value += PCI_STATUS_INTERRUPT * 256 ** (PCI_STATUS - offset);
    }
    return value;
  }

  write(offset: number, size: number, value: number): void {
    this.config.write(offset, size, value);
  }

  /** The bits the device core needs: MSI-X enable and function mask, bus mastering, INTx disable. */
  controlFlags(): number {
    const c = this.config;
    const command = c.u16(PCI_COMMAND);
    let flags = 0;
    if (command & PCI_COMMAND_MASTER) flags |= CTRL_BUS_MASTER;
    if (command & PCI_COMMAND_INTX_DISABLE) flags |= CTRL_INTX_DISABLE;
    if (this.msix) {
      const control = c.u16(MSIX_CAP_OFFSET + PCI_MSIX_FLAGS);
      if (control & PCI_MSIX_FLAGS_ENABLE) flags |= CTRL_MSIX_ENABLE;
      if (control & PCI_MSIX_FLAGS_MASKALL) flags |= CTRL_MSIX_MASKALL;
    }
    return flags;
  }

  /**
   * The address the BAR decodes at, or null: memory decoding off, or an address that wraps or
   * leaves the BAR's address width (which is what the all-ones sizing pattern produces).
   */
  barAddress(index: number): bigint | null {
    const bar = this.bars.find((b) => b.index === index);
    if (bar === undefined) return null;
    if ((this.config.u16(PCI_COMMAND) & PCI_COMMAND_MEMORY) === 0) return null;
    const at = PCI_BASE_ADDRESS_0 + 4 * index;
    let raw = BigInt(this.config.u32(at));
    if (bar.type === 'mem64') raw |= BigInt(this.config.u32(at + 4)) << 32n;
    const size = BigInt(bar.size);
    const base = raw & BigInt.asUintN(64, ~(size - 1n));
    const last = base + size - 1n;
    const limit = bar.type === 'mem64' ? 0xffffffffffffffffn : 0xffffffffn;
    if (last >= limit) return null;
    return base;
  }

  /** Raw bytes without the live interrupt bit, for state save. */
  snapshot(): Uint8Array {
    return this.config.bytes.slice();
  }

  /** Bits a state load must not change: neither writable nor write-1-to-clear. */
  readOnlyMismatch(bytes: Uint8Array): number {
    const c = this.config;
    for (let i = 0; i < PCI_CONFIG_SPACE_SIZE; i++) {
      if ((bytes[i] ^ c.bytes[i]) & ~c.wmask[i] & ~c.w1cmask[i] & 0xff) return i;
    }
    return -1;
  }

  restore(bytes: Uint8Array): void {
    this.config.bytes.set(bytes);
  }
}

/** A memory BAR's read-only low bits: 64-bit type and prefetchable flag. */
function barTypeBits(bar: BarInfo): number {
  return (
    (bar.type === 'mem64' ? PCI_BASE_ADDRESS_MEM_TYPE_64 : 0) | (bar.prefetchable ? PCI_BASE_ADDRESS_MEM_PREFETCH : 0)
  );
}
