// The server's side of the opt-in peer state table (core/peer-state-table.ts): it formats the
// table in the shared memory at start, gives each joining peer a slot and marks a leaving peer's
// slot gone the moment the server sees its EOF (a crash included, so a dead peer's state does not
// linger as if alive), and after each change rings the vector every listening peer asked for.
// QEMU peers get slots too; they never listen, so they are never rung.
import type { SharedMemory } from '../os/shared-memory.js';
import {
  DEFAULT_STATE_SLOTS,
  PeerStateTable,
  checkStateTableFits,
  defaultStateTableOffset,
} from '../core/peer-state-table.js';

/** The server's stateTable option: true for the defaults (64 slots in the memory's last page). */
export type StateTableOption = boolean | { slots?: number; offset?: number };

/** Where a table is, as a hand-over carries it. */
export interface StateTablePlace {
  offset: number;
  slots: number;
}

export class StateKeeper {
  readonly #table: PeerStateTable;
  readonly #slots = new Map<number, number>(); // peer id → slot
  readonly #ring: (id: number, vector: number) => void;
  /** Joins that found every slot present: those peers have no entry. */
  joinsWithoutEntry = 0;

  /** Resolves the option against the memory's size (checked, coded error if it does not fit). */
  static place(option: StateTableOption | undefined, size: number): StateTablePlace | undefined {
    if (option === undefined || option === false) return undefined;
    const o = option === true ? {} : option;
    const slots = o.slots ?? DEFAULT_STATE_SLOTS;
    const offset = o.offset ?? defaultStateTableOffset(size, slots);
    checkStateTableFits(size, offset, slots);
    return { offset, slots };
  }

  /**
   * A fresh table (format), or (adopted) the one a handed-over server kept, its peers' slots found
   * again. The table is guest-writable: one whose header a guest broke is formatted afresh, and a
   * peer whose entry a guest changed gets a slot anew, so a guest cannot make a hand-over fail or
   * hide a peer's later leave.
   */
  constructor(
    memory: SharedMemory,
    place: StateTablePlace,
    ring: (id: number, vector: number) => void,
    adoptedIds?: number[],
  ) {
    const bytes = memory.map();
    this.#ring = ring;
    this.#table =
      (adoptedIds && PeerStateTable.tryOpen(bytes, place)) || PeerStateTable.format(bytes, place.offset, place.slots);
    for (const id of adoptedIds ?? []) {
      const slot = this.#table.slotOf(id);
      if (slot >= 0) this.#slots.set(id, slot);
      else this.claim(id);
    }
  }

  get place(): StateTablePlace {
    return { offset: this.#table.offset, slots: this.#table.slots };
  }

  /** Before the newcomer's setup: its entry is present by the time it learns its id. */
  claim(id: number): void {
    const slot = this.#table.claim(id);
    if (slot < 0) this.joinsWithoutEntry++;
    else this.#slots.set(id, slot);
  }

  /** The newcomer is announced: the listeners hear of the change. */
  joined(id: number): void {
    const slot = this.#slots.get(id);
    if (slot !== undefined) this.#ringListeners(slot);
  }

  /** The peer's socket ended (it left, crashed or was dropped): its entry says gone. */
  left(id: number): void {
    const slot = this.#slots.get(id);
    if (slot === undefined) return;
    this.#slots.delete(id);
    this.#table.markGone(slot);
    this.#ringListeners(slot);
  }

  #ringListeners(changed: number): void {
    for (const { id, vector } of this.#table.listeners(changed)) this.#ring(id, vector);
  }
}
