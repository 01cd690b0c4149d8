// The inbound fast path of QEMU's ivshmem on KVM (its irqfd use): while the device says one of our
// own vectors is deliverable (its transport hook vectorDeliverable: MSI-X enabled, function and
// entry unmasked, bus mastering on), that vector's eventfd is a KVM irqfd on GSI
// `gsiBase + vector`, routed to the entry's message, so a peer's doorbell interrupts the guest with
// no exit to userspace. When the device says it no longer is, the irqfd goes away and the eventfd
// is the monitor's again: the device core then sees the signal and applies its own rules (pending
// bit while masked, drop counted while disabled).
import type { MsiMessage } from '../../device/transport.js';
import { KVM_IRQCHIP } from './kvm.js';
import type { GsiRoute, KvmVm } from './kvm.js';

/** KVM's default routing with an in-kernel irqchip: GSI n to PIC pin n (0..15) and IOAPIC pin n (0..23). */
export function defaultIrqchipRoutes(): GsiRoute[] {
  const routes: GsiRoute[] = [];
  for (let gsi = 0; gsi < 24; gsi++) {
    if (gsi < 16) {
      routes.push({
        gsi,
        kind: 'irqchip',
        chip: gsi < 8 ? KVM_IRQCHIP.PIC_MASTER : KVM_IRQCHIP.PIC_SLAVE,
        pin: gsi % 8,
      });
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
   * The device says own vector `vector` (on eventfd `fd`) is deliverable as `message`, or (null)
   * no longer is: assign, re-route or deassign its irqfd.
   */
  set(vector: number, fd: number, message: MsiMessage | null): void {
    const old = this.#routes.get(vector);
    if (old !== undefined && (message === null || old.fd !== fd)) {
      this.#deassign(old);
      this.#routes.delete(vector);
    }
    if (message === null) return; // its GSI keeps a stale MSI route, which nothing raises any more
    const wanted: IrqfdRoute = {
      vector,
      gsi: this.#gsiBase + vector,
      fd,
      address: message.address,
      data: message.data,
    };
    const table = new Map(this.#routes).set(vector, wanted);
    try {
      this.#vm.setGsiRouting([
        ...defaultIrqchipRoutes(),
        ...[...table.values()].map((w): GsiRoute => ({ gsi: w.gsi, kind: 'msi', address: w.address, data: w.data })),
      ]);
    } catch {
      this.#counts.irqfdErrors++;
      this.clear();
      return;
    }
    if (this.#routes.has(vector)) {
      this.#routes.set(vector, wanted); // same fd: the new message took effect with the table
      return;
    }
    try {
      this.#vm.irqfd(wanted.gsi, fd); // KVM injects at once if the eventfd is already signalled
      this.#counts.irqfdsAssigned++;
      this.#routes.set(vector, wanted);
    } catch {
      this.#counts.irqfdErrors++;
    }
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
