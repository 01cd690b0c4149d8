// The demo's message format in shared memory: each peer owns one 64-byte mailbox, which only its
// predecessor on the ring writes (through its device's BAR2, as a guest would) before ringing it.
//   +0 u32 sequence number   +4 u32 sender id   +8 u32 send time (ns, low)   +12 u32 send time (high)
//   +16 u32 checksum of the above, so a torn or stale message is detected rather than counted

export const MAILBOX_BYTES = 64;
export const VECTOR_MESSAGE = 0;
export const VECTOR_ACK = 1;

export function checksum(seq: number, from: number, lo: number, hi: number): number {
  return (Math.imul(seq ^ 0x9e3779b9, 31) ^ Math.imul(from + 1, 0x85ebca6b) ^ lo ^ Math.imul(hi, 7)) >>> 0;
}

/** Where peer number `slot` (its place on the ring) receives. */
export function mailboxOffset(slot: number): number {
  return slot * MAILBOX_BYTES;
}
