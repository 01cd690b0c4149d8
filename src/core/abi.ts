// The numbers-only contract of the device core, shared by the WebAssembly core and its
// plain-TypeScript twin. Constants mirror assembly/abi.ts (test/core/abi.test.ts keeps them equal).

export const MODE_PLAIN = 0;
export const MODE_DOORBELL = 1;
export const MODE_INTX = 2;
/** ivshmem-flat: no PCI; a 16-byte register window, one IRQ line pulsed per interrupt, 1..64 vectors. */
export const MODE_FLAT = 3;

// BAR0 register offsets.
export const REG_INTRMASK = 0x00;
export const REG_INTRSTATUS = 0x04;
export const REG_IVPOSITION = 0x08;
export const REG_DOORBELL = 0x0c;
/** The opt-in peer state registers (reserved, as in QEMU, unless the device has a state table). */
export const REG_STATE = 0x10;
export const REG_STATE_TABLE = 0x14;
export const REG_STATE_SLOT = 0x18;
/** ivshmem-flat's window when it carries the peer state registers. */
export const FLAT_REGS_SIZE_WITH_STATE = 32;

/** A Doorbell value: bits 31..16 name the peer, bits 7..0 the vector (bits 15..8 are ignored). */
export const DOORBELL_PEER_SHIFT = 16;
export const DOORBELL_VECTOR_MASK = 0xff;
/** ivshmem-flat takes the vector from bits 15..0 (the peer's vectors still bound it). */
export const DOORBELL_FLAT_VECTOR_MASK = 0xffff;
/** ivshmem-flat's register window, and the most vectors a flat device or its peers have. */
export const FLAT_REGS_SIZE = 16;
export const FLAT_MAX_VECTORS = 64;

/** An MSI-X table entry: message address (low, high), message data, vector control (bit 0: masked). */
export const MSIX_ENTRY_SIZE = 16;
export const MSIX_ENTRY_ADDR_LO = 0;
export const MSIX_ENTRY_ADDR_HI = 4;
export const MSIX_ENTRY_DATA = 8;
export const MSIX_ENTRY_CTRL = 12;
export const MSIX_ENTRY_MASKBIT = 1;

export const CTRL_MSIX_ENABLE = 1;
export const CTRL_MSIX_MASKALL = 2;
export const CTRL_BUS_MASTER = 4;
export const CTRL_INTX_DISABLE = 8;

export const C_DOORBELL_SENT = 0;
export const C_DOORBELL_NO_PEER = 1;
export const C_DOORBELL_NO_VECTOR = 2;
export const C_IRQ_DELIVERED = 3;
export const C_IRQ_PENDED = 4;
export const C_IRQ_DROPPED_DISABLED = 5;
export const C_IRQ_DROPPED_NO_MASTER = 6;
export const C_IRQ_DROPPED_BAD_VECTOR = 7;
export const C_GUEST_INVALID = 8;
export const COUNTER_COUNT = 9;

// Per-vector counter kinds (DeviceCore.vectorCounter), as in assembly/abi.ts.
export const V_FIRED = 0;
export const V_DELIVERED = 1;
export const V_PENDED = 2;
export const V_DROPPED_DISABLED = 3;
export const V_DROPPED_NO_MASTER = 4;
export const VECTOR_COUNTER_KINDS = 5;

export const ROUTE_FULL = -1;
export const ROUTE_BAD_PEER = -2;
export const ROUTE_BAD_HANDLE = -3;

export const MAX_PEERS = 65536;
/** The highest peer id (IVPosition is 16 bits). */
export const MAX_PEER_ID = MAX_PEERS - 1;
export const MAX_VECTORS = 2048;
export const BAR0_SIZE = 256;
export const SIGNAL_SLOTS = 8;

/** What the core asks of its surroundings; the glue forwards these to the VmmTransport. */
export interface CoreHost {
  /** Deliver an MSI-X message (64-bit address as two halves). */
  sendMsi(addressLo: number, addressHi: number, data: number, vector: number): void;
  /** The INTx pin changed level (0 or 1). Called only on change. */
  setIrqLevel(level: number): void;
  /** The guest wrote the State register (peer state table enabled): publish `value`. */
  statePublished?(value: number): void;
}

/**
 * One device's core. All arguments and results are numbers (u32 values come back unsigned).
 * After mmioWrite returns n > 0, signals[0..n) hold the route handles to signal.
 */
export interface DeviceCore {
  readonly kind: 'wasm' | 'ts';
  /** Handles left by the last mmioWrite; valid until the next call into the core. */
  readonly signals: Int32Array;
  init(mode: number, vectors: number, position: number): number;
  reset(): void;
  setPosition(id: number): void;
  mmioRead(bar: number, offset: number, size: number): number;
  readHigh(): number;
  mmioWrite(bar: number, offset: number, size: number, lo: number, hi: number): number;
  /** mmioRead(0, offset, 4) with fewer arguments crossing the boundary. */
  read32(offset: number): number;
  /** mmioWrite(0, offset, 4, value, 0) with fewer arguments crossing the boundary. */
  write32(offset: number, value: number): number;
  /** write32(0x0C, value) with the handle to signal as the result, or -1 for none (counted as
   *  write32 counts it); signals is left as it was. */
  doorbell(value: number): number;
  addRoute(peer: number, handle: number): number;
  removePeer(peer: number): number;
  peerVectors(peer: number): number;
  vectorFired(vector: number): void;
  /** 1 while a signal on `vector` would go out at once as its MSI-X message (MSI-X enabled,
   *  function and entry unmasked, bus mastering on), else 0. */
  vectorDeliverable(vector: number): number;
  setControl(flags: number): void;
  getControl(): number;
  intxAsserted(): number;
  counterValue(id: number): number;
  /** Doorbells rung through the route (peer, vector) since the peer joined; 0 if absent. */
  routeDoorbells(peer: number, vector: number): number;
  /** A per-vector counter (V_*); 0 for a vector or kind that does not exist. */
  vectorCounter(vector: number, kind: number): number;
  stateWords(): number;
  stateRead(index: number): number;
  stateWrite(index: number, value: number): void;
  stateCommit(): void;
  msixBarSize(): number;
  msixPbaOffset(): number;
  /** Turns on the peer state registers: the table at `offset` of the shared memory, our entry `slot`. */
  enableStateTable(offset: number, slot: number): void;
}
