// The demo's message format in shared memory: each peer owns one 64-byte mailbox, which only its
// predecessor on the ring writes (through its device's BAR2, as a guest would) before ringing it.
//   +0 u32 sequence number   +4 u32 sender id   +8 u32 send time (ns, low)   +12 u32 send time (high)
//   +16 u32 checksum of the above, so a torn or stale message is detected rather than counted
// The browser demo (web/) re-forms its ring when a peer leaves, so a receiver may briefly have two
// senders: there each (sender, receiver) pair has a mailbox of its own (pairMailboxOffset).

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

/** Peer ids the pair layout has room for: 64 × 64 mailboxes, 256 KiB of BAR2. */
export const PAIR_MAILBOX_PEERS = 64;

/**
 * Where `from` writes to `to` in the pair layout:
 *   +0 u32 sequence number (per pair, from 1)   +4 u32 sender id   +8 u32 receiver id
 *   +12 u32 the sender's message number         +16 u32 checksum of the four
 *   +20 u32 the sequence number the receiver acknowledges (written by the receiver)
 */
export function pairMailboxOffset(from: number, to: number): number {
  return ((to % PAIR_MAILBOX_PEERS) * PAIR_MAILBOX_PEERS + (from % PAIR_MAILBOX_PEERS)) * MAILBOX_BYTES;
}
