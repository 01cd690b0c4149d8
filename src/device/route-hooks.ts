// The device's side of a monitor's in-kernel fast paths (QEMU's ioeventfd and irqfd): it tells the
// transport's optional hooks about every doorbell route, as a write to BAR0's Doorbell the kernel
// may carry; about each of our own vectors' eventfds, when the embedder waits on them itself; and
// whenever MSI-X starts or stops delivering one of them. The rule for "deliverable" is the core's,
// so the monitor never re-derives it. Each hook hears of a change once, and of every end before
// the fd concerned is closed or passed on.
import {
  DOORBELL_PEER_SHIFT,
  DOORBELL_VECTOR_MASK,
  MSIX_ENTRY_ADDR_HI,
  MSIX_ENTRY_ADDR_LO,
  MSIX_ENTRY_DATA,
  MSIX_ENTRY_SIZE,
  REG_DOORBELL,
} from '../core/abi.js';
import type { DeviceCore } from '../core/abi.js';
import type { IoEventFd, MsiMessage, VmmTransport } from './transport.js';

/** What a hook that throws is reported as (the device counts it and emits 'error'). */
export type HookFailed = (call: string, err: unknown) => void;

export class RouteHooks {
  readonly #transport: VmmTransport;
  readonly #core: DeviceCore;
  /** Whether the embedder waits on our own vectors (vectorWait 'manual'): only it may hand them to the kernel. */
  readonly #embedderWaits: boolean;
  readonly #failed: HookFailed;
  readonly #ioeventfds = new Map<number, IoEventFd[]>();
  /** Our own vectors' eventfds, index = vector (holes for vectors not announced yet). */
  readonly #ownFds: number[] = [];
  readonly #delivering: (MsiMessage | null)[] = [];
  #released = false;

  constructor(transport: VmmTransport, core: DeviceCore, embedderWaits: boolean, failed: HookFailed) {
    this.#transport = transport;
    this.#core = core;
    this.#embedderWaits = embedderWaits;
    this.#failed = failed;
  }

  /** A route to `peer`'s vector `vector` on eventfd `fd` (our own vectors included: a ring to ourselves). */
  peerVector(peer: number, vector: number, fd: number): void {
    // The register names vectors 0..255 only: a higher one can never be rung, so the kernel gets no route for it.
    if (this.#released || this.#transport.addIoEventFd === undefined || vector > DOORBELL_VECTOR_MASK) return;
    const route: IoEventFd = {
      bar: 0,
      offset: REG_DOORBELL,
      size: 4,
      datamatch: ((peer << DOORBELL_PEER_SHIFT) | vector) >>> 0,
      fd,
      peer,
      vector,
    };
    const routes = this.#ioeventfds.get(peer) ?? [];
    routes.push(route);
    this.#ioeventfds.set(peer, routes);
    this.#call('addIoEventFd', () => this.#transport.addIoEventFd?.(route));
  }

  /** `peer` left: its routes go, while their eventfds are still open. */
  peerLeft(peer: number): void {
    for (const route of this.#ioeventfds.get(peer) ?? [])
      this.#call('removeIoEventFd', () => this.#transport.removeIoEventFd?.(route));
    this.#ioeventfds.delete(peer);
  }

  /** Our own vector `vector` arrives on `fd` from now on. */
  ownVector(vector: number, fd: number): void {
    if (this.#released || !this.#embedderWaits) return;
    this.#ownFds[vector] = fd;
    this.#call('vectorFd', () => this.#transport.vectorFd?.(vector, fd));
    this.#check(vector);
  }

  /** The guest changed MSI-X state (enable, masks, bus mastering, the table), or the device was reset or loaded. */
  msixChanged(): void {
    if (this.#released || this.#transport.vectorDeliverable === undefined) return;
    this.#ownFds.forEach((_, vector) => this.#check(vector));
  }

  #check(vector: number): void {
    const fd = this.#ownFds[vector];
    if (fd === undefined || this.#transport.vectorDeliverable === undefined) return;
    const now = this.#core.vectorDeliverable(vector) === 1 ? this.#message(vector) : null;
    const was = this.#delivering[vector] ?? null;
    if (now === null ? was === null : was !== null && was.address === now.address && was.data === now.data) return;
    this.#delivering[vector] = now;
    this.#call('vectorDeliverable', () => this.#transport.vectorDeliverable?.(vector, fd, now));
  }

  #message(vector: number): MsiMessage {
    const entry = vector * MSIX_ENTRY_SIZE;
    const read = (field: number) => this.#core.mmioRead(1, entry + field, 4);
    return { address: read(MSIX_ENTRY_ADDR_HI) * 2 ** 32 + read(MSIX_ENTRY_ADDR_LO), data: read(MSIX_ENTRY_DATA) };
  }

  /**
   * The device gives up its connection's fds (closed, or handed over): every hook hears that each one ends. Idempotent.
   */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    for (const peer of [...this.#ioeventfds.keys()]) this.peerLeft(peer);
    this.#ownFds.forEach((fd, vector) => {
      if ((this.#delivering[vector] ?? null) !== null) {
        this.#delivering[vector] = null;
        this.#call('vectorDeliverable', () => this.#transport.vectorDeliverable?.(vector, fd, null));
      }
      this.#call('vectorFd', () => this.#transport.vectorFd?.(vector, -1));
    });
    this.#ownFds.length = 0;
  }

  // The hooks run inside event-loop callbacks and guest accesses, where a throw has no caller able
  // to handle it; the device counts it and reports it as it does a throwing sendMsi.
  #call(name: string, hook: () => void): void {
    try {
      hook();
    } catch (err) {
      this.#failed(name, err);
    }
  }
}
