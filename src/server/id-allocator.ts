// Peer ids as QEMU's ivshmem-server hands them out: a 16-bit counter that advances from where it
// stopped to the first id not in use, so ids go round-robin rather than lowest-free (the first
// client gets 0; a client that reconnects gets a new id).
import { IvshmemError } from '../errors.js';

export class IdAllocator {
  #next: number;

  /** `first`: where the counter starts (0, as QEMU's; other values let tests reach the wrap). */
  constructor(first = 0) {
    if (!Number.isInteger(first) || first < 0 || first > 0xffff) {
      throw new IvshmemError('ERR_IVSHMEM_INVALID_OPTION', `firstId ${first} is out of range 0..65535`);
    }
    this.#next = first;
  }

  /** Where the counter stands: the first id the next allocate() tries (handed to a new server). */
  get next(): number {
    return this.#next;
  }

  /** The next free id, or -1 when all 65,536 are in use. */
  allocate(inUse: (id: number) => boolean): number {
    for (let probes = 0; probes < 65536; probes++) {
      const id = this.#next;
      this.#next = (this.#next + 1) & 0xffff;
      if (!inUse(id)) return id;
    }
    return -1;
  }
}
