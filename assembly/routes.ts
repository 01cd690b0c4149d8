// Doorbell route table: for each peer id that is present, the handles (eventfds, for the glue)
// of its vectors, in the order the server announced them. A directory of block addresses indexed
// by peer id starts at 16 slots and doubles up to 65,536 as higher ids appear; each present peer
// owns one block: a header, then one f64 doorbell count per vector, then one handle per vector
// (counts first keeps them 8-byte aligned).
import { alloc, free } from "./arena";
import { MAX_PEERS, ROUTE_BAD_HANDLE, ROUTE_BAD_PEER, ROUTE_FULL } from "./abi";

const BLOCK_HEADER: u32 = 8; // u32 count, u32 reserved

let dir: usize = 0;
let dirSlots: u32 = 0;
let perPeer: u32 = 0;

function blockBytes(): u32 {
  return BLOCK_HEADER + perPeer * 12;
}

// @ts-ignore: decorator
@inline
function handleAt(block: usize, vector: u32): usize {
  return block + BLOCK_HEADER + (<usize>perPeer << 3) + (<usize>vector << 2);
}

export function routesInit(vectorsPerPeer: u32): void {
  perPeer = vectorsPerPeer;
  dirSlots = 16;
  dir = alloc(dirSlots << 2);
}

function growDirectory(peer: u32): void {
  let slots = dirSlots;
  while (slots <= peer) slots <<= 1;
  const next = alloc(slots << 2);
  memory.copy(next, dir, <usize>dirSlots << 2);
  free(dir, dirSlots << 2);
  dir = next;
  dirSlots = slots;
}

/** Appends a handle (>= 0) to the peer's vectors; returns its vector index or a ROUTE_* error. */
export function addRoute(peer: u32, handle: i32): i32 {
  if (peer >= MAX_PEERS) return ROUTE_BAD_PEER;
  if (handle < 0) return ROUTE_BAD_HANDLE;
  if (perPeer == 0) return ROUTE_FULL; // refuse before a block exists: a refused peer stays absent
  if (peer >= dirSlots) growDirectory(peer);
  const slot = dir + (<usize>peer << 2);
  let block = <usize>load<u32>(slot);
  if (block == 0) {
    block = alloc(blockBytes());
    store<u32>(slot, <u32>block);
  }
  const n = load<u32>(block);
  if (n >= perPeer) return ROUTE_FULL;
  store<i32>(handleAt(block, n), handle);
  store<u32>(block, n + 1);
  return <i32>n;
}

/** The block of a present peer, or 0. */
// @ts-ignore: decorator
@inline
function blockOf(peer: u32): usize {
  return peer < dirSlots ? <usize>load<u32>(dir + (<usize>peer << 2)) : 0;
}

/** Forgets a peer; returns how many vectors it had, or -1 if it was not present. */
export function removePeer(peer: u32): i32 {
  const block = blockOf(peer);
  if (block == 0) return -1;
  const n = load<u32>(block);
  free(block, blockBytes());
  store<u32>(dir + (<usize>peer << 2), 0);
  return <i32>n;
}

export function peerVectors(peer: u32): i32 {
  const block = blockOf(peer);
  return block == 0 ? 0 : <i32>load<u32>(block);
}

// Result codes of lookup() below; a handle is >= 0.
export const NO_PEER: i32 = -1;
export const NO_VECTOR: i32 = -2;

/** The handle for (peer, vector), counting the ring on that route, or NO_PEER / NO_VECTOR. The doorbell's hot path. */
// @ts-ignore: decorator
@inline
export function lookup(peer: u32, vector: u32): i32 {
  const block = blockOf(peer);
  if (block == 0) return NO_PEER;
  if (vector >= load<u32>(block)) return NO_VECTOR;
  const count = block + BLOCK_HEADER + (<usize>vector << 3);
  store<f64>(count, load<f64>(count) + 1.0);
  return load<i32>(handleAt(block, vector));
}

/** Doorbells rung through (peer, vector) since the peer joined; 0 for an absent route. */
export function routeDoorbells(peer: u32, vector: u32): f64 {
  const block = blockOf(peer);
  if (block == 0 || vector >= load<u32>(block)) return 0;
  return load<f64>(block + BLOCK_HEADER + (<usize>vector << 3));
}
