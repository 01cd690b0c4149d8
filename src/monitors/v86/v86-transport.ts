// A VmmTransport for the v86 emulator: makes an ivshmem device (an IvshmemDevice in Node, a
// WebDevice in a browser worker) a PCI function of a v86 machine.
// v86 is not a dependency: the emulator object is handed in, and the few internals a device needs
// (not in v86.d.ts) are checked on attach so that a changed v86 fails loudly. Our config space
// stays authoritative: v86 serves config reads from its own copy, so every write is passed to the
// device and the dwords it touched are copied back. v86 has no MSI, so the device runs in intx
// mode; its BARs are fixed at the addresses given here.
import type { DeviceModel } from '../../device/model.js';
import { IvshmemError } from '../../errors.js';
import type { VmmTransport } from '../../device/transport.js';
import {
  PCI_BASE_ADDRESS_0,
  PCI_BASE_ADDRESS_2,
  PCI_BASE_ADDRESS_3,
  PCI_CARDBUS_CIS,
  PCI_COMMAND,
  PCI_REVISION_ID,
} from '../../device/pci/registers.js';

/** The parts of v86 (0.5.462) this transport uses. */
interface V86Pci {
  register_device(device: {
    pci_id: number;
    pci_space: number[];
    pci_bars: ({ size: number } | undefined)[];
    name: string;
  }): Int32Array;
  raise_irq(pciId: number): void;
  lower_irq(pciId: number): void;
  pci_write8(address: number, value: number): void;
  pci_write16(address: number, value: number): void;
  pci_write32(address: number, value: number): void;
}
interface V86Io {
  mmap_register(
    addr: number,
    size: number,
    r8: (a: number) => number,
    w8: (a: number, v: number) => void,
    r32: (a: number) => number,
    w32: (a: number, v: number) => void,
  ): void;
}
export interface V86Emulator {
  v86: { cpu: { devices: { pci: V86Pci }; io: V86Io } };
}

export interface V86TransportOptions {
  /** PCI slot: 0x0f has its own IRQ (11) with v86's default devices; INTx lines are not shared safely. */
  slot?: number;
  /** Where BAR0 and BAR2 are fixed (v86 ignores BAR moves): outside RAM and v86's windows. */
  bar0Address?: number;
  bar2Address?: number;
}

// v86 maps MMIO in blocks of this size.
const MMIO_BLOCK = 0x20000;

export class V86Transport implements VmmTransport {
  readonly slot: number;
  readonly bar0Address: number;
  readonly bar2Address: number;
  /** MSI messages the device wanted to send: v86 has none, so they are counted and dropped. */
  msiDropped = 0;
  #pci: V86Pci | undefined;
  #space: Int32Array | undefined;
  #device: DeviceModel | undefined;
  #level = 0;

  constructor(options: V86TransportOptions = {}) {
    this.slot = options.slot ?? 0x0f;
    this.bar0Address = options.bar0Address ?? 0xfe000000;
    this.bar2Address = options.bar2Address ?? 0xf0000000;
    for (const [name, a] of [
      ['bar0Address', this.bar0Address],
      ['bar2Address', this.bar2Address],
    ] as const) {
      if (!Number.isInteger(a) || a <= 0 || a % MMIO_BLOCK !== 0 || a >= 2 ** 32) {
        throw new IvshmemError(
          'ERR_IVSHMEM_INVALID_OPTION',
          `${name} must be a 32-bit address aligned to 128 KiB (v86's MMIO granularity)`,
        );
      }
    }
    if (!Number.isInteger(this.slot) || this.slot < 2 || this.slot > 31) {
      throw new IvshmemError('ERR_IVSHMEM_INVALID_OPTION', "slot must be 2..31 (0 and 1 are v86's bridges)");
    }
  }

  get #pciId(): number {
    return this.slot << 3;
  }

  setIrqLevel(level: 0 | 1): void {
    this.#level = level;
    if (this.#pci === undefined) return;
    if (level) this.#pci.raise_irq(this.#pciId);
    else this.#pci.lower_irq(this.#pciId);
    this.#sync(PCI_COMMAND);
  }

  sendMsi(): void {
    this.msiDropped++;
  }

  /**
   * Registers the device with the emulator. Call it on v86's 'emulator-loaded' event, before
   * emulator.run(). The device should be in intx mode (v86 has no MSI) with BAR2 of at least 128 KiB.
   */
  attach(emulator: V86Emulator, device: DeviceModel): void {
    const pci = emulator?.v86?.cpu?.devices?.pci;
    const io = emulator?.v86?.cpu?.io;
    const needed = ['register_device', 'raise_irq', 'lower_irq', 'pci_write8', 'pci_write16', 'pci_write32'] as const;
    if (!pci || !io || typeof io.mmap_register !== 'function' || needed.some((k) => typeof pci[k] !== 'function')) {
      throw new IvshmemError(
        'ERR_IVSHMEM_V86',
        'this v86 lacks the internals the device needs (cpu.devices.pci.register_device, raise_irq, pci_write8/16/32, cpu.io.mmap_register); it was built for v86 0.5.462',
      );
    }
    const bar2 = device.bars.find((b) => b.index === 2)!;
    if (bar2.size < MMIO_BLOCK)
      throw new IvshmemError(
        'ERR_IVSHMEM_INVALID_SIZE',
        'v86 maps memory in 128 KiB blocks: BAR2 must be at least 128 KiB',
      );
    if (device.mode !== 'intx')
      throw new IvshmemError('ERR_IVSHMEM_INVALID_MODE', 'v86 has no MSI: create the device with mode intx');
    this.#device = device;

    // The fixed BARs, in our config space too, so both agree on where they are.
    device.configWrite(PCI_BASE_ADDRESS_0, 4, this.bar0Address);
    device.configWrite(PCI_BASE_ADDRESS_2, 4, this.bar2Address);
    device.configWrite(PCI_BASE_ADDRESS_3, 4, 0);
    const space = Array.from({ length: 256 }, (_, i) => device.configRead(i, 1));
    this.#space = pci.register_device({
      pci_id: this.#pciId,
      pci_space: space,
      name: 'ivshmem',
      pci_bars: [{ size: 256 }, undefined, { size: bar2.size }],
    });
    this.#pci = pci;
    this.#wrapConfigWrites(pci);

    const base0 = this.bar0Address;
    io.mmap_register(
      base0,
      MMIO_BLOCK,
      (a) => this.#bar0Read((a >>> 0) - base0, 1),
      (a, v) => this.#bar0Write((a >>> 0) - base0, 1, v),
      (a) => this.#bar0Read((a >>> 0) - base0, 4),
      (a, v) => this.#bar0Write((a >>> 0) - base0, 4, v),
    );
    // BAR2 is RAM: read and write the shared memory directly, little-endian like the guest.
    const base2 = this.bar2Address;
    const bytes = new Uint8Array(device.sharedMemory.buffer, 0, bar2.size);
    const view = new DataView(device.sharedMemory.buffer, 0, bar2.size);
    io.mmap_register(
      base2,
      Math.max(MMIO_BLOCK, bar2.size),
      (a) => bytes[(a >>> 0) - base2] ?? 0,
      (a, v) => {
        const at = (a >>> 0) - base2;
        if (at < bytes.length) bytes[at] = v;
      },
      (a) => {
        const at = (a >>> 0) - base2;
        return at + 4 <= bytes.length ? view.getInt32(at, true) : 0;
      },
      (a, v) => {
        const at = (a >>> 0) - base2;
        if (at + 4 <= bytes.length) view.setInt32(at, v, true);
      },
    );
    if (this.#level) pci.raise_irq(this.#pciId);
  }

  #bar0Read(offset: number, size: 1 | 4): number {
    const value = this.#device!.mmioRead(0, offset, size);
    this.#sync(PCI_COMMAND); // reading IntrStatus may have lowered the device's level
    return value;
  }

  #bar0Write(offset: number, size: 1 | 4, value: number): void {
    this.#device!.mmioWrite(0, offset, size, value >>> 0);
    this.#sync(PCI_COMMAND);
  }

  // v86 calls these through the PCI object for every config write; ours go to the device, whose
  // answer (write masks, INTx state) is copied back. BARs stay v86's, fixed.
  #wrapConfigWrites(pci: V86Pci): void {
    for (const [name, size] of [
      ['pci_write8', 1],
      ['pci_write16', 2],
      ['pci_write32', 4],
    ] as const) {
      const original = pci[name].bind(pci);
      pci[name] = (address: number, value: number) => {
        const bdf = (address >> 8) & 0xffff;
        const offset = address & 0xff;
        if (bdf !== this.#pciId || (offset >= PCI_BASE_ADDRESS_0 && offset < PCI_CARDBUS_CIS)) {
          original(address, value);
          return;
        }
        this.#device!.configWrite(offset, size, value >>> 0);
        this.#sync(offset);
        if (offset + size > PCI_COMMAND && offset < PCI_REVISION_ID) this.#sync(PCI_COMMAND);
      };
    }
  }

  /** Copies the dword holding `offset` from our config space into v86's. */
  #sync(offset: number): void {
    if (this.#space === undefined || this.#device === undefined || this.#device.released) return;
    const at = offset & 0xfc;
    this.#space[at >> 2] = this.#device.configRead(at, 4) | 0;
  }
}
