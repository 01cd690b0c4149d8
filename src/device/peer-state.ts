// A device's part in the opt-in peer state table: it finds its own entry (the server made it
// present before the device learned its id), says which of its vectors its peers should ring, and
// publishes what its guest writes to the State register, ringing every other listening peer. The
// table is in the shared memory, which every guest on the server can write: what it holds is
// guest data, so each vector read from it is bounded before it is rung.
import { IvshmemError } from '../errors.js';
import { PeerStateTable } from '../core/peer-state-table.js';

/** The device's stateTable option. */
export interface StateTableDeviceOption {
  /** The vector this device's guest is interrupted on when any entry changes. */
  vector: number;
  /** Where the server keeps the table (default: found where the server's default puts it, ending at the memory's end). */
  offset?: number;
}

export class DevicePeerState {
  readonly table: PeerStateTable;
  readonly slot: number;

  /** `o` as options.ts checked it: its vector is one of the device's. */
  constructor(memory: ArrayBufferLike, size: number, id: number, o: StateTableDeviceOption) {
    this.table =
      o.offset === undefined ? PeerStateTable.findAtEnd(memory, size) : PeerStateTable.open(memory, o.offset);
    this.slot = this.table.slotOf(id);
    if (this.slot < 0) {
      throw new IvshmemError(
        'ERR_IVSHMEM_STATE_TABLE',
        `the state table has no entry for peer ${id}: all ${this.table.slots} slots are taken (start the server with more)`,
      );
    }
    this.table.listen(this.slot, o.vector);
  }

  /** Publishes `state`; returns the (peer, vector) doorbells to ring, each inside the device's vectors. */
  publish(state: number, vectors: number): number[] {
    this.table.publish(this.slot, state);
    const out: number[] = [];
    for (const { id, vector } of this.table.listeners(this.slot)) {
      if (vector < vectors && id <= 0xffff) out.push(((id << 16) | vector) >>> 0);
    }
    return out;
  }
}
