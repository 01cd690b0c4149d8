// The peer state table (docs/peer-state-table.md): an opt-in, version-tagged region of the shared
// memory where every peer on a server has an entry — who it is, whether it is present or gone, the
// 32-bit state its guest published, and the vector it wants rung when any entry changes. The
// server writes presence (at join, and at the EOF of a peer that left or died); a device writes its
// own entry's state and vector. Both sides use this file, on the mapped bytes; no I/O.
// It is guest ABI, like abi.ts, and as free of I/O: the device reads it on its guest path.
// Little-endian, as the guests that read it.
import { IvshmemError } from '../errors.js';

export const STATE_TABLE_MAGIC = 0x54535649; // "IVST"
export const STATE_TABLE_VERSION = 1;
export const STATE_HEADER_BYTES = 64;
export const STATE_ENTRY_BYTES = 32;
export const DEFAULT_STATE_SLOTS = 64;
/** The table's place by default: whole pages at the end of the memory. */
export const STATE_TABLE_ALIGN = 4096;

// Header fields.
const H_MAGIC = 0;
const H_VERSION = 4; // u16 version, u16 header bytes
const H_SLOTS = 8;
const H_ENTRY_BYTES = 12;
const H_GENERATION = 16;

// Entry fields.
const E_ID = 0;
const E_PRESENCE = 4;
const E_STATE = 8;
const E_SEQUENCE = 12;
const E_VECTOR = 16; // the listening vector + 1; 0: this peer wants no interrupt

export const PRESENCE_EMPTY = 0;
export const PRESENCE_PRESENT = 1;
export const PRESENCE_GONE = 2;

export interface StateEntry {
  slot: number;
  id: number;
  presence: number;
  state: number;
  sequence: number;
  /** The vector the peer listens on, or -1. */
  vector: number;
}

/** Bytes the table takes for `slots` entries, rounded up to whole pages. */
export function stateTableBytes(slots: number): number {
  const raw = STATE_HEADER_BYTES + slots * STATE_ENTRY_BYTES;
  return Math.ceil(raw / STATE_TABLE_ALIGN) * STATE_TABLE_ALIGN;
}

/** Where the table sits by default in a memory of `size` bytes: its last pages. */
export function defaultStateTableOffset(size: number, slots = DEFAULT_STATE_SLOTS): number {
  return size - stateTableBytes(slots);
}

export function checkStateTableFits(size: number, offset: number, slots: number): void {
  if (!Number.isInteger(slots) || slots < 1 || slots > 65536)
    throw new IvshmemError('ERR_IVSHMEM_STATE_TABLE', `a state table has 1..65536 slots, not ${slots}`);
  const bytes = STATE_HEADER_BYTES + slots * STATE_ENTRY_BYTES;
  if (!Number.isInteger(offset) || offset < 0 || offset % 8 !== 0 || offset + bytes > size) {
    throw new IvshmemError(
      'ERR_IVSHMEM_STATE_TABLE',
      `a state table of ${slots} slots (${bytes} bytes) at offset ${offset} does not fit ${size} bytes of shared memory (the offset must be a multiple of 8)`,
    );
  }
}

export class PeerStateTable {
  readonly offset: number;
  readonly slots: number;
  readonly #view: DataView;
  // When each slot's peer left (a count of leaves in this process), for claim's choice.
  readonly #gone: number[] = [];
  #leaves = 0;

  private constructor(memory: ArrayBufferLike, offset: number, slots: number) {
    this.offset = offset;
    this.slots = slots;
    this.#view = new DataView(memory, offset, STATE_HEADER_BYTES + slots * STATE_ENTRY_BYTES);
  }

  /** Writes a fresh table (the server, at start): header, every entry empty. */
  static format(memory: ArrayBufferLike, offset: number, slots: number): PeerStateTable {
    checkStateTableFits(memory.byteLength, offset, slots);
    const t = new PeerStateTable(memory, offset, slots);
    new Uint8Array(memory, offset, STATE_HEADER_BYTES + slots * STATE_ENTRY_BYTES).fill(0);
    const v = t.#view;
    v.setUint32(H_MAGIC, STATE_TABLE_MAGIC, true);
    v.setUint16(H_VERSION, STATE_TABLE_VERSION, true);
    v.setUint16(H_VERSION + 2, STATE_HEADER_BYTES, true);
    v.setUint32(H_SLOTS, slots, true);
    v.setUint32(H_ENTRY_BYTES, STATE_ENTRY_BYTES, true);
    return t;
  }

  /** Reads an existing table (a device, after joining), checking what its header says. */
  static open(memory: ArrayBufferLike, offset: number): PeerStateTable {
    if (
      !Number.isInteger(offset) ||
      offset < 0 ||
      offset % 8 !== 0 ||
      offset + STATE_HEADER_BYTES > memory.byteLength
    ) {
      throw new IvshmemError(
        'ERR_IVSHMEM_STATE_TABLE',
        `offset ${offset} cannot hold a state table in ${memory.byteLength} bytes of shared memory`,
      );
    }
    const h = new DataView(memory, offset, STATE_HEADER_BYTES);
    if (h.getUint32(H_MAGIC, true) !== STATE_TABLE_MAGIC) {
      throw new IvshmemError(
        'ERR_IVSHMEM_STATE_TABLE',
        `no peer state table at offset ${offset} of the shared memory: start the server with one (stateTable, --state-table)`,
      );
    }
    const version = h.getUint16(H_VERSION, true);
    const headerBytes = h.getUint16(H_VERSION + 2, true);
    const entryBytes = h.getUint32(H_ENTRY_BYTES, true);
    if (version !== STATE_TABLE_VERSION || headerBytes !== STATE_HEADER_BYTES || entryBytes !== STATE_ENTRY_BYTES) {
      throw new IvshmemError(
        'ERR_IVSHMEM_STATE_TABLE',
        `the state table at offset ${offset} is version ${version} (${headerBytes}-byte header, ${entryBytes}-byte entries); this library reads version ${STATE_TABLE_VERSION}`,
      );
    }
    const slots = h.getUint32(H_SLOTS, true);
    checkStateTableFits(memory.byteLength, offset, slots);
    return new PeerStateTable(memory, offset, slots);
  }

  /**
   * The table in its default place, whatever its slot count: it ends where the memory ends, in
   * whole pages, so a device need not be told how many slots the server chose. Looks at each page
   * boundary from the end for a header whose size puts its end there.
   */
  static findAtEnd(memory: ArrayBufferLike, size = memory.byteLength): PeerStateTable {
    const largest = stateTableBytes(65536);
    for (let bytes = STATE_TABLE_ALIGN; bytes <= Math.min(size, largest); bytes += STATE_TABLE_ALIGN) {
      const h = new DataView(memory, size - bytes, STATE_HEADER_BYTES);
      if (h.getUint32(H_MAGIC, true) === STATE_TABLE_MAGIC && stateTableBytes(h.getUint32(H_SLOTS, true)) === bytes)
        return PeerStateTable.open(memory, size - bytes);
    }
    throw new IvshmemError(
      'ERR_IVSHMEM_STATE_TABLE',
      `no peer state table at the end of the shared memory: start the server with one (stateTable, --state-table), or give the device its offset`,
    );
  }

  /** The table at `place` if it is there as described (same version and slots), else undefined. */
  static tryOpen(memory: ArrayBufferLike, place: { offset: number; slots: number }): PeerStateTable | undefined {
    try {
      const t = PeerStateTable.open(memory, place.offset);
      return t.slots === place.slots ? t : undefined;
    } catch {
      return undefined;
    }
  }

  get generation(): number {
    return this.#view.getUint32(H_GENERATION, true);
  }

  #at(slot: number, field: number): number {
    return STATE_HEADER_BYTES + slot * STATE_ENTRY_BYTES + field;
  }

  #get(slot: number, field: number): number {
    return this.#view.getUint32(this.#at(slot, field), true);
  }

  #set(slot: number, field: number, value: number): void {
    this.#view.setUint32(this.#at(slot, field), value >>> 0, true);
  }

  // Every change: the entry's sequence, then the table's generation, after the fields it changed.
  #changed(slot: number): void {
    this.#set(slot, E_SEQUENCE, this.#get(slot, E_SEQUENCE) + 1);
    this.#view.setUint32(H_GENERATION, (this.generation + 1) >>> 0, true);
  }

  entry(slot: number): StateEntry {
    return {
      slot,
      id: this.#get(slot, E_ID),
      presence: this.#get(slot, E_PRESENCE),
      state: this.#get(slot, E_STATE),
      sequence: this.#get(slot, E_SEQUENCE),
      vector: this.#get(slot, E_VECTOR) - 1,
    };
  }

  entries(): StateEntry[] {
    return Array.from({ length: this.slots }, (_, s) => this.entry(s));
  }

  /** The slot a present peer holds, or -1. */
  slotOf(id: number): number {
    for (let s = 0; s < this.slots; s++) {
      if (this.#get(s, E_PRESENCE) === PRESENCE_PRESENT && this.#get(s, E_ID) === id) return s;
    }
    return -1;
  }

  /**
   * The server gives a joining peer a slot: an empty one first, else the one whose peer left
   * longest ago, so that the latest leaves stay visible longest. -1: every slot is present.
   */
  claim(id: number): number {
    let slot = -1;
    for (let s = 0; s < this.slots && slot < 0; s++) if (this.#get(s, E_PRESENCE) === PRESENCE_EMPTY) slot = s;
    if (slot < 0) {
      let oldest = Infinity;
      for (let s = 0; s < this.slots; s++) {
        const when = this.#gone[s] ?? Infinity;
        if (this.#get(s, E_PRESENCE) === PRESENCE_GONE && when < oldest) [slot, oldest] = [s, when];
      }
      // A slot gone before this server started (a table it adopted) has no time: take the first.
      for (let s = 0; s < this.slots && slot < 0; s++) if (this.#get(s, E_PRESENCE) === PRESENCE_GONE) slot = s;
    }
    if (slot < 0) return -1;
    this.#set(slot, E_ID, id);
    this.#set(slot, E_STATE, 0);
    this.#set(slot, E_VECTOR, 0);
    this.#set(slot, E_PRESENCE, PRESENCE_PRESENT);
    this.#changed(slot);
    return slot;
  }

  /** The server saw the peer's EOF: its entry says gone (its last state stays readable). */
  markGone(slot: number): void {
    this.#set(slot, E_PRESENCE, PRESENCE_GONE);
    this.#set(slot, E_VECTOR, 0);
    this.#gone[slot] = ++this.#leaves;
    this.#changed(slot);
  }

  /** A device: the vector its peers ring when the table changes (-1: none). */
  listen(slot: number, vector: number): void {
    this.#set(slot, E_VECTOR, vector + 1);
    this.#changed(slot);
  }

  /** A device: its guest published `state`. */
  publish(slot: number, state: number): void {
    this.#set(slot, E_STATE, state);
    this.#changed(slot);
  }

  /** The present peers that listen, other than `exceptSlot`: whom to ring after a change. */
  listeners(exceptSlot = -1): { id: number; vector: number }[] {
    const out: { id: number; vector: number }[] = [];
    for (let s = 0; s < this.slots; s++) {
      if (s === exceptSlot || this.#get(s, E_PRESENCE) !== PRESENCE_PRESENT) continue;
      const v = this.#get(s, E_VECTOR);
      if (v > 0) out.push({ id: this.#get(s, E_ID), vector: v - 1 });
    }
    return out;
  }
}
