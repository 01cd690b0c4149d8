// A guest's view of a PCI function, found the way Linux finds it: read the ids, size each BAR by
// writing all ones and restoring it (pci_read_bases, with memory decoding off meanwhile), and
// walk the capability list with a loop bound (PCI_FIND_CAP_TTL). Used by `ivshmem info` and by
// the tests that prove a Linux-style probe accepts the device.
import {
  PCI_BASE_ADDRESS_0,
  PCI_BASE_ADDRESS_MEM_PREFETCH,
  PCI_BASE_ADDRESS_MEM_TYPE_64,
  PCI_CAP_ID_MSIX,
  PCI_CAPABILITY_LIST,
  PCI_CLASS_DEVICE,
  PCI_COMMAND,
  PCI_COMMAND_MEMORY,
  PCI_CONFIG_HEADER_SIZE,
  PCI_DEVICE_ID,
  PCI_HEADER_TYPE,
  PCI_INTERRUPT_PIN,
  PCI_MSIX_FLAGS,
  PCI_MSIX_FLAGS_QSIZE,
  PCI_MSIX_PBA,
  PCI_MSIX_TABLE,
  PCI_REVISION_ID,
  PCI_STATUS,
  PCI_STATUS_CAP_LIST,
  PCI_SUBSYSTEM_ID,
  PCI_SUBSYSTEM_VENDOR_ID,
  PCI_VENDOR_ID,
} from './registers.js';

export interface ConfigAccess {
  configRead(offset: number, size: number): number;
  configWrite(offset: number, size: number, value: number): void;
}

export interface ProbedBar {
  index: number;
  size: bigint;
  is64: boolean;
  prefetchable: boolean;
}

export interface ProbedFunction {
  vendor: number;
  device: number;
  subsystemVendor: number;
  subsystem: number;
  classCode: number;
  revision: number;
  headerType: number;
  interruptPin: number;
  bars: ProbedBar[];
  capabilities: { id: number; offset: number }[];
  msix: {
    offset: number;
    tableSize: number;
    tableBar: number;
    tableOffset: number;
    pbaBar: number;
    pbaOffset: number;
  } | null;
}

const FIND_CAP_TTL = 48;

export function probeFunction(dev: ConfigAccess): ProbedFunction {
  const r8 = (o: number) => dev.configRead(o, 1);
  const r16 = (o: number) => dev.configRead(o, 2);
  const r32 = (o: number) => dev.configRead(o, 4) >>> 0;

  const command = r16(PCI_COMMAND);
  dev.configWrite(PCI_COMMAND, 2, command & ~PCI_COMMAND_MEMORY);
  const bars: ProbedBar[] = [];
  for (let i = 0; i < 6; i++) {
    const at = PCI_BASE_ADDRESS_0 + 4 * i;
    const original = r32(at);
    dev.configWrite(at, 4, 0xffffffff);
    const sized = r32(at);
    dev.configWrite(at, 4, original);
    if (sized === 0 || sized === 0xffffffff || (original & 1) !== 0) continue; // absent (or I/O: unused here)
    const is64 = (original & 0x6) === PCI_BASE_ADDRESS_MEM_TYPE_64;
    let mask = BigInt(sized & ~0xf);
    if (is64) {
      const highOriginal = r32(at + 4);
      dev.configWrite(at + 4, 4, 0xffffffff);
      mask |= BigInt(r32(at + 4)) << 32n;
      dev.configWrite(at + 4, 4, highOriginal);
    } else {
      mask |= 0xffffffff00000000n;
    }
    const size = BigInt.asUintN(64, ~mask) + 1n;
    bars.push({ index: i, size, is64, prefetchable: (original & PCI_BASE_ADDRESS_MEM_PREFETCH) !== 0 });
    if (is64) i++;
  }
  dev.configWrite(PCI_COMMAND, 2, command);

  const capabilities: { id: number; offset: number }[] = [];
  let msix: ProbedFunction['msix'] = null;
  if (r16(PCI_STATUS) & PCI_STATUS_CAP_LIST) {
    let at = r8(PCI_CAPABILITY_LIST) & ~3;
    for (let ttl = FIND_CAP_TTL; at >= PCI_CONFIG_HEADER_SIZE && ttl > 0; ttl--) {
      const id = r8(at);
      if (id === 0xff) break;
      capabilities.push({ id, offset: at });
      if (id === PCI_CAP_ID_MSIX) {
        const table = r32(at + PCI_MSIX_TABLE);
        const pba = r32(at + PCI_MSIX_PBA);
        msix = {
          offset: at,
          tableSize: (r16(at + PCI_MSIX_FLAGS) & PCI_MSIX_FLAGS_QSIZE) + 1,
          tableBar: table & 7,
          tableOffset: table & ~7,
          pbaBar: pba & 7,
          pbaOffset: pba & ~7,
        };
      }
      at = r8(at + 1) & ~3;
    }
  }

  return {
    vendor: r16(PCI_VENDOR_ID),
    device: r16(PCI_DEVICE_ID),
    subsystemVendor: r16(PCI_SUBSYSTEM_VENDOR_ID),
    subsystem: r16(PCI_SUBSYSTEM_ID),
    classCode: r16(PCI_CLASS_DEVICE),
    revision: r8(PCI_REVISION_ID),
    headerType: r8(PCI_HEADER_TYPE),
    interruptPin: r8(PCI_INTERRUPT_PIN),
    bars,
    capabilities,
    msix,
  };
}
