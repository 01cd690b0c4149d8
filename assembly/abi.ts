// The numbers the WASM core shares with its TypeScript glue and twin (src/core/abi.ts mirrors
// them; a test checks that both sides agree).

/** Device modes: what the guest sees. */
export const MODE_PLAIN: i32 = 0;
export const MODE_DOORBELL: i32 = 1;
export const MODE_INTX: i32 = 2;
/** ivshmem-flat: no PCI; a 16-byte register window, one IRQ line pulsed per interrupt, 1..64 vectors. */
export const MODE_FLAT: i32 = 3;

/** BAR0 register offsets (4 bytes each, as in QEMU's ivshmem). */
export const REG_INTRMASK: u32 = 0x00;
export const REG_INTRSTATUS: u32 = 0x04;
export const REG_IVPOSITION: u32 = 0x08;
export const REG_DOORBELL: u32 = 0x0c;
/** The opt-in peer state registers (reserved, as in QEMU, unless the device has a state table). */
export const REG_STATE: u32 = 0x10;
export const REG_STATE_TABLE: u32 = 0x14;
export const REG_STATE_SLOT: u32 = 0x18;
/** ivshmem-flat's window when it carries the peer state registers. */
export const FLAT_REGS_SIZE_WITH_STATE: u32 = 32;

/** A Doorbell value: bits 31..16 name the peer, bits 7..0 the vector (bits 15..8 are ignored). */
export const DOORBELL_PEER_SHIFT: u32 = 16;
export const DOORBELL_VECTOR_MASK: u32 = 0xff;
/** ivshmem-flat takes the vector from bits 15..0 (the peer's vectors still bound it). */
export const DOORBELL_FLAT_VECTOR_MASK: u32 = 0xffff;
/** ivshmem-flat's register window, and the most vectors a flat device or its peers have. */
export const FLAT_REGS_SIZE: u32 = 16;
export const FLAT_MAX_VECTORS: u32 = 64;

/** An MSI-X table entry: message address (low, high), message data, vector control (bit 0: masked). */
export const MSIX_ENTRY_SIZE: u32 = 16;
export const MSIX_ENTRY_ADDR_LO: u32 = 0;
export const MSIX_ENTRY_ADDR_HI: u32 = 4;
export const MSIX_ENTRY_DATA: u32 = 8;
export const MSIX_ENTRY_CTRL: u32 = 12;
export const MSIX_ENTRY_MASKBIT: u32 = 1;

/** Bits of the control word the PCI function hands to the core after config writes. */
export const CTRL_MSIX_ENABLE: u32 = 1;
export const CTRL_MSIX_MASKALL: u32 = 2;
export const CTRL_BUS_MASTER: u32 = 4;
export const CTRL_INTX_DISABLE: u32 = 8;

/** Counter indexes. */
export const C_DOORBELL_SENT: i32 = 0;
export const C_DOORBELL_NO_PEER: i32 = 1;
export const C_DOORBELL_NO_VECTOR: i32 = 2;
export const C_IRQ_DELIVERED: i32 = 3;
export const C_IRQ_PENDED: i32 = 4;
export const C_IRQ_DROPPED_DISABLED: i32 = 5;
export const C_IRQ_DROPPED_NO_MASTER: i32 = 6;
export const C_IRQ_DROPPED_BAD_VECTOR: i32 = 7;
export const C_GUEST_INVALID: i32 = 8;
export const COUNTER_COUNT: i32 = 9;

// Per-vector counters (vectorCounter's `kind`): the vector fired, was delivered, was left pending,
// was dropped because MSI-X was disabled, or because bus mastering was off.
export const V_FIRED: u32 = 0;
export const V_DELIVERED: u32 = 1;
export const V_PENDED: u32 = 2;
export const V_DROPPED_DISABLED: u32 = 3;
export const V_DROPPED_NO_MASTER: u32 = 4;
export const VECTOR_COUNTER_KINDS: u32 = 5;

/** Results of addRoute besides a vector index. */
export const ROUTE_FULL: i32 = -1;
export const ROUTE_BAD_PEER: i32 = -2;
export const ROUTE_BAD_HANDLE: i32 = -3;

/** Peer ids are 16 bits on the wire and in the doorbell register. */
export const MAX_PEERS: u32 = 65536;
export const MAX_VECTORS: u32 = 2048;
