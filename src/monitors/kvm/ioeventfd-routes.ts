// The outbound fast path of QEMU's ivshmem on KVM (`ioeventfd=on`): one KVM ioeventfd for each
// doorbell route the device announces through its addIoEventFd hook (a write of the route's
// datamatch to BAR0's Doorbell), so a guest's ring signals the peer's eventfd in the kernel with
// no exit. Routes are kept whether or not their BAR decodes; they are registered at the BAR's
// current address and follow it when it moves. Any other value written to the Doorbell still
// exits to the device core.
import type { IoEventFd } from '../../device/transport.js';
import type { KvmVm } from './kvm.js';

/** One doorbell route registered as a KVM ioeventfd. */
export interface IoeventfdRoute {
  peer: number;
  vector: number;
  /** The eventfd a matching write signals. */
  fd: number;
  /** Guest-physical address: the BAR's address plus the register's offset. */
  address: number;
  size: number;
  /** The value the write must carry: (peer << 16) | vector. */
  datamatch: number;
}

/** Where the counts of KVM_IOEVENTFD calls go (the monitor's stats). */
export interface IoeventfdCounts {
  ioeventfdsAssigned: number;
  ioeventfdsDeassigned: number;
  /** Calls KVM refused (that route stays on the WASM path), or deassigns of fds already gone. */
  ioeventfdErrors: number;
}

export class IoeventfdRoutes {
  readonly #vm: KvmVm;
  readonly #counts: IoeventfdCounts;
  /** Known routes, by "peer:vector". */
  readonly #routes = new Map<string, IoEventFd>();
  /** The routes registered with KVM, at their BAR's address. */
  readonly #registered = new Map<string, IoeventfdRoute>();
  /** Each BAR's guest-physical address, or null while it does not decode. */
  readonly #base: (number | null)[] = [null, null, null];

  constructor(vm: KvmVm, counts: IoeventfdCounts) {
    this.#vm = vm;
    this.#counts = counts;
  }

  /** The routes registered right now (empty while BAR0 does not decode). */
  get registered(): IoeventfdRoute[] {
    return [...this.#registered.values()].map((r) => ({ ...r }));
  }

  add(route: IoEventFd): void {
    const key = `${route.peer}:${route.vector}`;
    this.#unregister(key);
    this.#routes.set(key, route);
    this.#register(key);
  }

  remove(route: IoEventFd): void {
    const key = `${route.peer}:${route.vector}`;
    if (this.#routes.get(key)?.fd !== route.fd) return;
    this.#unregister(key);
    this.#routes.delete(key);
  }

  /** A BAR moved or stopped decoding (null): the registrations on it follow. */
  moveTo(bar: number, base: number | null): void {
    if (this.#base[bar] === base) return;
    for (const key of [...this.#registered.keys()]) if (this.#routes.get(key)?.bar === bar) this.#unregister(key);
    this.#base[bar] = base;
    for (const [key, route] of this.#routes) if (route.bar === bar) this.#register(key);
  }

  /** Deassigns everything and forgets the routes (before the VM or the eventfds close). */
  clear(): void {
    for (const key of [...this.#registered.keys()]) this.#unregister(key);
    this.#routes.clear();
  }

  #register(key: string): void {
    const route = this.#routes.get(key);
    const base = route === undefined ? null : this.#base[route.bar];
    if (route === undefined || base === null) return;
    const address = base + route.offset;
    const { datamatch, size } = route;
    try {
      this.#vm.ioeventfd(address, size, datamatch, route.fd);
    } catch {
      this.#counts.ioeventfdErrors++; // e.g. KVM's io-bus limit: this route keeps exiting to the WASM core
      return;
    }
    this.#counts.ioeventfdsAssigned++;
    this.#registered.set(key, { peer: route.peer, vector: route.vector, fd: route.fd, address, size, datamatch });
  }

  #unregister(key: string): void {
    const r = this.#registered.get(key);
    if (r === undefined) return;
    this.#registered.delete(key);
    try {
      this.#vm.removeIoeventfd(r.address, r.size, r.datamatch, r.fd);
      this.#counts.ioeventfdsDeassigned++;
    } catch {
      this.#counts.ioeventfdErrors++; // not expected: the monitor deassigns before the eventfd is closed or passed on
    }
  }
}
