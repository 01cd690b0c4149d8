// ivshmem-flat's bus side: no PCI, so no configuration space, no BAR sizing and no command
// register. The 16-byte register window and the shared memory sit where the monitor put them
// (board code wires QEMU's ivshmem-flat the same way), for the device's whole life. A saved state
// carries an empty 256-byte configuration area so that one format serves both shapes.
import { IvshmemError } from '../../errors.js';
import type { BarInfo, BusFunction } from '../bus-function.js';
import { PCI_CONFIG_SPACE_SIZE } from '../pci/registers.js';

export interface FlatLayout {
  /** Guest-physical address of the register window (16 bytes). */
  registers: bigint;
  /** Guest-physical address of the shared memory. */
  memory: bigint;
  memorySize: number;
  /** 16 bytes, or 32 with the peer state registers. */
  registersSize: number;
}

const TWO_64 = 2n ** 64n;

export class FlatWindow implements BusFunction {
  readonly bars: readonly BarInfo[];
  readonly hasConfigSpace = false;
  readonly #addresses: readonly (bigint | null)[];

  constructor(layout: FlatLayout) {
    const { registers, memory, memorySize, registersSize } = layout;
    const size = BigInt(memorySize);
    if (memory + size > TWO_64) {
      throw new IvshmemError(
        'ERR_IVSHMEM_INVALID_OPTION',
        `memoryAddress 0x${memory.toString(16)} with ${memorySize} bytes of shared memory runs past the 64-bit address space`,
      );
    }
    if (registers < memory + size && memory < registers + BigInt(registersSize)) {
      throw new IvshmemError(
        'ERR_IVSHMEM_INVALID_OPTION',
        `the register window at 0x${registers.toString(16)} overlaps the shared memory at 0x${memory.toString(16)} (${memorySize} bytes)`,
      );
    }
    this.bars = [
      { index: 0, size: registersSize, type: 'mem64', prefetchable: false },
      { index: 2, size: memorySize, type: 'mem64', prefetchable: false },
    ];
    this.#addresses = [registers, null, memory];
  }

  read(): number {
    return 0;
  }

  write(): void {}

  controlFlags(): number {
    return 0;
  }

  barAddress(index: number): bigint | null {
    return this.#addresses[index] ?? null;
  }

  reset(): void {}

  snapshot(): Uint8Array {
    return new Uint8Array(PCI_CONFIG_SPACE_SIZE);
  }

  readOnlyMismatch(bytes: Uint8Array): number {
    return bytes.findIndex((b) => b !== 0);
  }

  restore(): void {}
}
