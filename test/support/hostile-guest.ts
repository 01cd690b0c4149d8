// A hostile guest for the fuzz test: random but biased configuration-space and BAR accesses
// (every size 1..8, every offset including out-of-range and misaligned ones, MSI-X table and PBA
// writes, command and Message Control toggles, doorbells to random peers and vectors) mixed with
// the monitor's own events (vectors firing, peers coming and going, reset, state save and load).
// Also an independent model of how BAR0 cuts an access into register pieces, so the doorbell and
// invalid-access counters can be predicted rather than only compared.
import type { Rng } from './rng.js';

export type FuzzMode = 'plain' | 'doorbell' | 'intx';

export type FuzzOp =
  | { k: 'cfgRead'; offset: number; size: number }
  | { k: 'cfgWrite'; offset: number; size: number; value: number }
  | { k: 'read'; bar: number; offset: number; size: number }
  | { k: 'write'; bar: number; offset: number; size: number; value: number | bigint }
  | { k: 'fire'; vector: number }
  | { k: 'route'; peer: number }
  | { k: 'unroute'; peer: number }
  | { k: 'reset' }
  | { k: 'save' }
  | { k: 'load'; snapshot: number; corrupt: number; xor: number };

export const isGuestOp = (op: FuzzOp): boolean =>
  op.k === 'cfgRead' || op.k === 'cfgWrite' || op.k === 'read' || op.k === 'write';

/** Route handles carry their peer and vector, so a ring can be traced back (and loopback modelled). */
export const routeHandle = (peer: number, vector: number): number => peer * 4096 + vector;
export const handlePeer = (handle: number): number => Math.floor(handle / 4096);
export const handleVector = (handle: number): number => handle % 4096;

export interface GuestShape {
  mode: FuzzMode;
  vectors: number;
  bar1Size: number;
  pbaOffset: number;
  bar2Size: number;
  /** Peers the monitor may connect (including our own id, for loopback doorbells). */
  peers: number[];
}

const SIZES = [1, 2, 3, 4, 5, 6, 7, 8];
const BAD_SIZES = [0, 9, 16, -1];
const CONFIG_REGS = [
  0x00, 0x02, 0x04, 0x05, 0x06, 0x08, 0x0a, 0x0c, 0x0e, 0x10, 0x14, 0x18, 0x1c, 0x20, 0x24, 0x2c, 0x30, 0x34, 0x3c,
  0x3d, 0x40, 0x42, 0x43, 0x44, 0x48,
];
const COMMAND_BITS = [0x1, 0x2, 0x4, 0x100, 0x400];
// Out of range for any BAR, negative, or numbers no guest address is: the glue must refuse them all.
const WILD_OFFSETS = [
  -1,
  -4,
  0x100,
  0x1000,
  0x7ffffffc,
  0x80000000,
  0xfffffffc,
  2 ** 32,
  2 ** 32 + 0x0c,
  2 ** 40,
  0.5,
  12.5,
];

function size(rng: Rng): number {
  return rng.chance(0.03) ? rng.pick(BAD_SIZES) : rng.pick(SIZES);
}

/** Random bits, often sparse or all ones, as a value for `bytes` bytes (a bigint for 8). */
function value(rng: Rng, bytes: number): number | bigint {
  const r = rng.int(8);
  const u = r === 0 ? 0 : r === 1 ? 0xffffffff : r === 2 ? 1 << rng.int(32) : rng.u32();
  if (bytes <= 4) return u >>> 0;
  if (rng.chance(0.3)) return u; // a number for an 8-byte write, as a monitor may pass
  return (BigInt(rng.u32()) << 32n) | BigInt(u >>> 0);
}

function doorbellValue(rng: Rng, g: GuestShape): number {
  const peer = rng.chance(0.7) ? rng.pick(g.peers) : rng.int(65536);
  const vector = rng.chance(0.8) ? rng.int(Math.min(256, Math.max(g.vectors, 1) + 2)) : rng.int(256);
  const noise = rng.chance(0.2) ? rng.int(256) << 8 : 0; // bits 15..8 are ignored
  return ((peer << 16) | noise | vector) >>> 0;
}

function configWrite(rng: Rng, g: GuestShape): FuzzOp {
  const r = rng.int(10);
  if (r < 3) {
    // Command register: memory decode, bus master, INTx disable (and the other writable bits).
    let v = 0;
    for (const bit of COMMAND_BITS) if (rng.chance(bit === 0x4 || bit === 0x2 ? 0.7 : 0.3)) v |= bit;
    if (rng.chance(0.1)) v |= rng.u32() & 0xffff;
    const s = rng.int(4);
    if (s === 0) return { k: 'cfgWrite', offset: 0x04, size: 1, value: v & 0xff };
    if (s === 1) return { k: 'cfgWrite', offset: 0x05, size: 1, value: v >>> 8 };
    if (s === 2) return { k: 'cfgWrite', offset: 0x04, size: 4, value: (v | (rng.chance(0.5) ? 0xffff0000 : 0)) >>> 0 };
    return { k: 'cfgWrite', offset: 0x04, size: 2, value: v };
  }
  if (r < 6 && g.mode === 'doorbell') {
    // MSI-X Message Control: enable and function mask, with noise in the read-only table size.
    let v = (rng.chance(0.75) ? 0x8000 : 0) | (rng.chance(0.3) ? 0x4000 : 0);
    if (rng.chance(0.2)) v |= rng.int(0x4000);
    const s = rng.int(4);
    if (s === 0) return { k: 'cfgWrite', offset: 0x43, size: 1, value: v >>> 8 };
    if (s === 1) return { k: 'cfgWrite', offset: 0x40, size: 4, value: ((v << 16) | rng.int(0x10000)) >>> 0 };
    return { k: 'cfgWrite', offset: 0x42, size: 2, value: v };
  }
  if (r < 8) {
    // BARs: sizing with all ones, placing, and rewriting the read-only low bits.
    const at = 0x10 + 4 * rng.int(6);
    const v = rng.chance(0.3) ? 0xffffffff : rng.chance(0.5) ? (rng.u32() & 0xfffff000) >>> 0 : rng.u32();
    return {
      k: 'cfgWrite',
      offset: rng.chance(0.1) ? at + rng.int(4) : at,
      size: rng.chance(0.1) ? rng.pick([1, 2]) : 4,
      value: v,
    };
  }
  if (r < 9) {
    return {
      k: 'cfgWrite',
      offset: rng.chance(0.2) ? rng.pick(WILD_OFFSETS) : rng.pick(CONFIG_REGS),
      size: size(rng),
      value: rng.u32(),
    };
  }
  return { k: 'cfgWrite', offset: rng.int(0x104), size: size(rng), value: rng.u32() };
}

function configRead(rng: Rng): FuzzOp {
  const r = rng.int(10);
  const offset =
    r < 5 ? rng.int(0x100) : r < 8 ? rng.pick(CONFIG_REGS) : r < 9 ? 0xf8 + rng.int(10) : rng.pick(WILD_OFFSETS);
  return { k: 'cfgRead', offset, size: size(rng) };
}

function bar0(rng: Rng, g: GuestShape): FuzzOp {
  const r = rng.int(20);
  if (r < 6 && g.mode !== 'plain') {
    const at = rng.chance(0.85) ? 0x0c : rng.pick([0x0d, 0x0e, 0x0f, 0x08, 0x0a]);
    const s = at === 0x0c && rng.chance(0.85) ? 4 : rng.pick(SIZES);
    const v = doorbellValue(rng, g);
    const wide = s > 4 ? (BigInt(doorbellValue(rng, g)) << 32n) | BigInt(v) : v;
    return { k: 'write', bar: 0, offset: at, size: s, value: s > 4 ? wide : v };
  }
  const offset = r < 12 ? rng.int(0x14) : r < 17 ? rng.int(0x108) : r < 18 ? 0xf8 + rng.int(8) : rng.pick(WILD_OFFSETS);
  const s = rng.chance(0.5) ? 4 : size(rng);
  if (rng.chance(0.5)) return { k: 'read', bar: 0, offset, size: s };
  return { k: 'write', bar: 0, offset, size: s, value: value(rng, s) };
}

function bar1(rng: Rng, g: GuestShape): FuzzOp {
  const r = rng.int(20);
  const vector = rng.chance(0.9) ? rng.int(g.vectors) : g.vectors + rng.int(3);
  if (r < 10) {
    // A table entry: address, data, or vector control (the mask bit), at dword or qword width.
    const field = rng.int(4);
    const at = vector * 16 + field * 4;
    if (field === 3) {
      const v = rng.chance(0.45) ? 0 : rng.chance(0.8) ? 1 : rng.u32();
      return { k: 'write', bar: 1, offset: at, size: 4, value: v };
    }
    const s = field % 2 === 0 && rng.chance(0.4) ? 8 : 4;
    return {
      k: 'write',
      bar: 1,
      offset: rng.chance(0.05) ? at + 1 + rng.int(3) : at,
      size: rng.chance(0.05) ? rng.pick(SIZES) : s,
      value: value(rng, s),
    };
  }
  let offset: number;
  if (r < 14) offset = vector * 16 + rng.int(16);
  else if (r < 17) offset = g.pbaOffset + rng.int(Math.max(8, ((g.vectors + 63) >>> 6) * 8) + 8) - 4;
  else if (r < 19) offset = rng.int(g.bar1Size + 16);
  else offset = rng.pick(WILD_OFFSETS);
  const s = size(rng);
  if (rng.chance(0.5)) return { k: 'read', bar: 1, offset, size: s };
  return { k: 'write', bar: 1, offset, size: s, value: value(rng, s) };
}

function otherBar(rng: Rng, g: GuestShape): FuzzOp {
  const r = rng.int(4);
  let bar: number;
  let offset: number;
  if (r < 3) {
    bar = 2;
    offset = rng.chance(0.9) ? rng.int(g.bar2Size + 8) - 4 : rng.pick(WILD_OFFSETS);
  } else {
    bar = rng.pick([1, 3, 4, 5, 6, -1, 2 ** 32]);
    offset = rng.int(0x1000);
  }
  const s = size(rng);
  if (rng.chance(0.5)) return { k: 'read', bar, offset, size: s };
  return { k: 'write', bar, offset, size: s, value: value(rng, s) };
}

/** One random operation; save and load are tried whether or not the device may migrate. */
export function nextOp(rng: Rng, g: GuestShape, snapshots: number): FuzzOp {
  const r = rng.int(1000);
  if (r < 120) return configRead(rng);
  if (r < 280) return configWrite(rng, g);
  if (r < 560) return bar0(rng, g);
  if (r < 820) return g.mode === 'doorbell' ? bar1(rng, g) : otherBar(rng, g);
  if (r < 870) return otherBar(rng, g);
  if (r < 975) return { k: 'fire', vector: rng.chance(0.9) ? rng.int(g.vectors + 1) : rng.pick([g.vectors, 4096, -1]) };
  if (r < 987) {
    return { k: 'route', peer: rng.chance(0.8) ? rng.pick(g.peers) : rng.pick([65535, 65536, -1, 7.5]) };
  }
  if (r < 992) return { k: 'unroute', peer: rng.chance(0.9) ? rng.pick(g.peers) : rng.pick([65535, -1]) };
  if (r < 994) return { k: 'reset' };
  if (r < 997 || snapshots === 0) return { k: 'save' };
  // Most loads are of a good state; some have a flipped bit, anywhere or in the core words.
  const corrupt = rng.chance(0.6)
    ? -1
    : rng.chance(0.5)
      ? rng.int(400)
      : 284 + rng.int(64 + (g.vectors * 16 + 256) / 4) * 4 + rng.int(4);
  return { k: 'load', snapshot: rng.int(snapshots), corrupt, xor: 1 << rng.int(8) };
}

export function describeOp(op: FuzzOp): string {
  const hex = (n: number | bigint) =>
    typeof n === 'bigint' ? `0x${n.toString(16)}n` : Number.isInteger(n) && n >= 0 ? `0x${n.toString(16)}` : String(n);
  switch (op.k) {
    case 'cfgRead':
      return `configRead(${hex(op.offset)}, ${op.size})`;
    case 'cfgWrite':
      return `configWrite(${hex(op.offset)}, ${op.size}, ${hex(op.value)})`;
    case 'read':
      return `mmioRead(${op.bar}, ${hex(op.offset)}, ${op.size})`;
    case 'write':
      return `mmioWrite(${op.bar}, ${hex(op.offset)}, ${op.size}, ${hex(op.value)})`;
    case 'fire':
      return `fireVector(${op.vector})`;
    case 'route':
      return `connectPeerVector(${op.peer}, next handle)`;
    case 'unroute':
      return `disconnectPeer(${op.peer})`;
    case 'reset':
      return 'reset()';
    case 'save':
      return 'saveState()';
    case 'load':
      return `loadState(snapshot ${op.snapshot}${op.corrupt >= 0 ? `, byte ${op.corrupt} ^= ${op.xor}` : ''})`;
  }
}

// ---- BAR0 model ------------------------------------------------------------------------------

export interface Bar0Piece {
  /** Offset of the piece in BAR0 (the register is offset & 0xfc for writes). */
  at: number;
  /** The piece's bytes, zero-extended: what a 4-byte register access of the piece carries. */
  value: number;
}

const isU32 = (n: number) => Number.isInteger(n) && n >= 0 && n <= 0xffffffff;

/**
 * The register pieces of a BAR0 access, or null if the whole access is refused (bad size, or an
 * offset no guest can produce). Pieces outside the 256-byte BAR are holes and are not listed;
 * `hole` says whether there were any. Each piece is the largest power of two that fits the bytes
 * left, 4, and the alignment of its offset.
 */
export function bar0Pieces(
  offset: number,
  size: number,
  value: number | bigint,
): { pieces: Bar0Piece[]; hole: boolean } | null {
  if (!isU32(offset) || !Number.isInteger(size) || size < 1 || size > 8 || offset > 0x7fffffff) return null;
  let v: bigint;
  if (typeof value === 'bigint') v = BigInt.asUintN(64, value);
  else v = (BigInt(Math.floor(value / 2 ** 32) >>> 0) << 32n) | BigInt(value >>> 0);
  if (size <= 4 && typeof value === 'number') v &= 0xffffffffn;
  const pieces: Bar0Piece[] = [];
  let hole = false;
  for (let done = 0; done < size;) {
    const pos = offset + done;
    let len = size - done;
    if (pos < 256) {
      len = Math.min(len, 256 - pos, 4);
      const align = pos & -pos;
      if (align !== 0 && align < len) len = align;
    } else {
      len = Math.min(len, 4);
      hole = true;
    }
    len = 1 << (31 - Math.clz32(len));
    if (pos < 256) pieces.push({ at: pos, value: Number((v >> BigInt(done * 8)) & ((1n << BigInt(len * 8)) - 1n)) });
    done += len;
  }
  return { pieces, hole };
}

/** Whether a BAR0 piece hits a register: reads need the exact offset, writes any byte of one. */
export function bar0PieceValid(at: number, write: boolean): boolean {
  if (write) return (at & 0xfc) === 0x00 || (at & 0xfc) === 0x04 || (at & 0xfc) === 0x0c;
  return at === 0x00 || at === 0x04 || at === 0x08;
}
