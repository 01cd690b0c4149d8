// The inbound fast path of QEMU's ivshmem on KVM (its irqfd use): while MSI-X would deliver one of
// our own vectors — MSI-X enabled, function and entry unmasked, bus mastering on — that vector's
// eventfd is a KVM irqfd on GSI `gsiBase + vector`, routed to the entry's message, so a peer's
// doorbell interrupts the guest with no exit to userspace. Whenever a vector is not deliverable
// the irqfd goes away and the eventfd is the monitor's again: the device core then sees the
// signal and applies its own rules (pending bit while masked, drop counted while disabled).
import type { IvshmemDevice } from '../../device/device.js';
import { MSIX_CAP_OFFSET } from '../../device/pci/ivshmem-function.js';
import { PCI_COMMAND, PCI_COMMAND_MASTER, PCI_MSIX_FLAGS, PCI_MSIX_FLAGS_ENABLE, PCI_MSIX_FLAGS_MASKALL } from '../../device/pci/registers.js';
import { KVM_IRQCHIP } from './kvm.js';
import type { GsiRoute, KvmVm } from './kvm.js';

const MSIX_CONTROL = MSIX_CAP_OFFSET + PCI_MSIX_FLAGS;
/** A 16-byte MSI-X table entry: address low, address high, data, vector control (bit 0: masked). */
const ENTRY_SIZE = 16;

/** KVM's default routing with an in-kernel irqchip: GSI n to PIC pin n (0..15) and IOAPIC pin n (0..23). */
export function defaultIrqchipRoutes(): GsiRoute[] {
  const routes: GsiRoute[] = [];
  for (let gsi = 0; gsi < 24; gsi++) {
    if (gsi < 16) {
      routes.push({ gsi, kind: 'irqchip', chip: gsi < 8 ? KVM_IRQCHIP.PIC_MASTER : KVM_IRQCHIP.PIC_SLAVE, pin: gsi % 8 });
    }
    routes.push({ gsi, kind: 'irqchip', chip: KVM_IRQCHIP.IOAPIC, pin: gsi });
  }
  return routes;
}

/** One own vector currently delivered by KVM. */
export interface IrqfdRoute {
  vector: number;
  gsi: number;
  fd: number;
  address: number;
  data: number;
}

/** Where the counts of KVM_IRQFD calls go (the monitor's stats). */
export interface IrqfdCounts {
  irqfdsAssigned: number;
  /** irqfd assign/deassign and routing-table calls KVM refused (those vectors stay on the WASM path). */
  irqfdErrors: number;
}

export class IrqfdRoutes {
  readonly #vm: KvmVm;
  readonly #gsiBase: number;
  readonly #routes = new Map<number, IrqfdRoute>();
  readonly #counts: IrqfdCounts;

  constructor(vm: KvmVm, counts: IrqfdCounts, gsiBase = 24) {
    this.#vm = vm;
    this.#counts = counts;
    this.#gsiBase = gsiBase;
  }

  /** The vectors KVM delivers right now. */
  get routes(): IrqfdRoute[] {
    return [...this.#routes.values()].map((r) => ({ ...r }));
  }

  /** The eventfds KVM consumes right now (the monitor must not wait on them). */
  has(fd: number): boolean {
    for (const r of this.#routes.values()) if (r.fd === fd) return true;
    return false;
  }

  /**
   * Brings the irqfds in line with the device's MSI-X state and `ownFds` (index = vector).
   * Returns whether anything changed.
   */
  sync(device: IvshmemDevice, ownFds: readonly number[]): boolean {
    const wanted = new Map<number, IrqfdRoute>();
    const control = device.configRead(MSIX_CONTROL, 2);
    const master = (device.configRead(PCI_COMMAND, 2) & PCI_COMMAND_MASTER) !== 0;
    if (device.mode === 'doorbell' && master && (control & PCI_MSIX_FLAGS_ENABLE) !== 0 && (control & PCI_MSIX_FLAGS_MASKALL) === 0) {
      ownFds.forEach((fd, vector) => {
        if (vector >= device.vectors || fd < 0) return;
        const at = vector * ENTRY_SIZE;
        if ((Number(device.mmioRead(1, at + 12, 4)) & 1) !== 0) return; // entry masked
        const address = Number(device.mmioRead(1, at + 4, 4)) * 2 ** 32 + Number(device.mmioRead(1, at, 4));
        const data = Number(device.mmioRead(1, at + 8, 4));
        wanted.set(vector, { vector, gsi: this.#gsiBase + vector, fd, address, data });
      });
    }
    const same = (a: IrqfdRoute | undefined, b: IrqfdRoute) => a !== undefined && a.fd === b.fd && a.address === b.address && a.data === b.data;
    if (wanted.size === this.#routes.size && [...wanted.values()].every((w) => same(this.#routes.get(w.vector), w))) return false;

    for (const [vector, r] of [...this.#routes]) {
      if (wanted.get(vector)?.fd === r.fd) continue;
      this.#deassign(r);
      this.#routes.delete(vector);
    }
    try {
      this.#vm.setGsiRouting([
        ...defaultIrqchipRoutes(),
        ...[...wanted.values()].map((w): GsiRoute => ({ gsi: w.gsi, kind: 'msi', address: w.address, data: w.data })),
      ]);
    } catch {
      this.#counts.irqfdErrors++;
      for (const r of [...this.#routes.values()]) this.#deassign(r);
      this.#routes.clear();
      return true;
    }
    for (const w of wanted.values()) {
      if (this.#routes.has(w.vector)) {
        this.#routes.set(w.vector, w); // same fd: the new message took effect with the table
        continue;
      }
      try {
        this.#vm.irqfd(w.gsi, w.fd); // KVM injects at once if the eventfd is already signalled
        this.#counts.irqfdsAssigned++;
        this.#routes.set(w.vector, w);
      } catch {
        this.#counts.irqfdErrors++;
      }
    }
    return true;
  }

  #deassign(r: IrqfdRoute): void {
    try {
      this.#vm.removeIrqfd(r.gsi, r.fd);
    } catch {
      this.#counts.irqfdErrors++; // not expected: the monitor deassigns before the eventfd is closed or passed on
    }
  }

  /** Deassigns every irqfd (the VM's table keeps stale MSI routes, which nothing raises). */
  clear(): void {
    for (const r of this.#routes.values()) this.#deassign(r);
    this.#routes.clear();
  }
}
