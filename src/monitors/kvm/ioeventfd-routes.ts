// The outbound fast path of QEMU's ivshmem on KVM (`ioeventfd=on`): one KVM ioeventfd per
// (peer, vector) route of a server-joined device, on BAR0's Doorbell register (length 4,
// datamatch (peer << 16) | vector), so a guest's ring signals the peer's eventfd in the kernel
// with no exit. Routes are kept whether or not BAR0 decodes; they are registered at BAR0's
// current address and follow it when it moves. Any other value written to the Doorbell (bits set
// in 15..8, unknown peers or vectors) still exits to the device core.
import { REG_DOORBELL } from '../../core/abi.js';
import type { KvmVm } from './kvm.js';
/** The Doorbell register carries the vector in bits 7..0: higher vectors cannot be rung. */
const DOORBELL_VECTORS = 256;

/** One doorbell route registered as a KVM ioeventfd. */
export interface IoeventfdRoute {
  peer: number;
  vector: number;
  /** The eventfd a matching write signals. */
  fd: number;
  /** Guest-physical address: BAR0 + 0x0C. */
  address: number;
  /** (peer << 16) | vector. */
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
  /** Known routes ("peer:vector" -> eventfd). */
  readonly #routes = new Map<string, { peer: number; vector: number; fd: number }>();
  /** The routes registered with KVM, at #base. */
  readonly #registered = new Map<string, IoeventfdRoute>();
  /** BAR0's guest-physical address, or null while it does not decode. */
  #base: number | null = null;

  constructor(vm: KvmVm, counts: IoeventfdCounts) {
    this.#vm = vm;
    this.#counts = counts;
  }

  /** The routes registered right now (empty while BAR0 does not decode). */
  get registered(): IoeventfdRoute[] {
    return [...this.#registered.values()].map((r) => ({ ...r }));
  }

  add(peer: number, vector: number, fd: number): void {
    if (vector >= DOORBELL_VECTORS) return; // the register cannot name it; QEMU's registration would never match a valid ring
    const key = `${peer}:${vector}`;
    this.#unregister(key);
    this.#routes.set(key, { peer, vector, fd });
    this.#register(key);
  }

  removePeer(peer: number): void {
    for (const [key, route] of [...this.#routes]) {
      if (route.peer !== peer) continue;
      this.#unregister(key);
      this.#routes.delete(key);
    }
  }

  /** BAR0 moved or stopped decoding (null): every registration follows it. */
  moveTo(base: number | null): void {
    for (const key of [...this.#registered.keys()]) this.#unregister(key);
    this.#base = base;
    for (const key of this.#routes.keys()) this.#register(key);
  }

  /** Deassigns everything and forgets the routes (before the VM or the eventfds close). */
  clear(): void {
    for (const key of [...this.#registered.keys()]) this.#unregister(key);
    this.#routes.clear();
  }

  #register(key: string): void {
    const route = this.#routes.get(key);
    if (route === undefined || this.#base === null) return;
    const address = this.#base + REG_DOORBELL;
    const datamatch = route.peer * 0x10000 + route.vector;
    try {
      this.#vm.ioeventfd(address, 4, datamatch, route.fd);
    } catch {
      this.#counts.ioeventfdErrors++; // e.g. KVM's io-bus limit: this route keeps exiting to the WASM core
      return;
    }
    this.#counts.ioeventfdsAssigned++;
    this.#registered.set(key, { peer: route.peer, vector: route.vector, fd: route.fd, address, datamatch });
  }

  #unregister(key: string): void {
    const r = this.#registered.get(key);
    if (r === undefined) return;
    this.#registered.delete(key);
    try {
      this.#vm.removeIoeventfd(r.address, 4, r.datamatch, r.fd);
      this.#counts.ioeventfdsDeassigned++;
    } catch {
      this.#counts.ioeventfdErrors++; // not expected: the monitor deassigns before the eventfd is closed or passed on
    }
  }
}
