// Guest accesses to BAR0 and BAR1, cut into pieces exactly as QEMU's memory core cuts them on the
// path KVM exits and qtest take (address_space_rw): each piece is the largest power of two that
// fits the bytes left, the region, the region's maximum access size and the alignment of its
// address. A piece of a region that implements only 4-byte accesses becomes one 4-byte access at
// the piece's (possibly unaligned) address, truncated to the piece. Pieces that hit no register
// read 0 and are dropped, and the access counts as invalid.
import { count } from "./counters";
import { C_GUEST_INVALID, FLAT_REGS_SIZE, FLAT_REGS_SIZE_WITH_STATE, MODE_DOORBELL, MODE_FLAT } from "./abi";
import * as bar0 from "./registers";
import { pbaBytes, pbaReadDword, tableBytes, tableReadDword, tableWriteDword } from "./interrupts";

export const BAR0_SIZE: u32 = 256;
// Offsets beyond this are far outside any BAR; refusing them keeps the piece arithmetic in range.
const MAX_OFFSET: u32 = 0x7fffffff;

const KIND_HOLE: i32 = 0;
const KIND_REGS: i32 = 1;
const KIND_TABLE: i32 = 2;
const KIND_PBA: i32 = 3;

let msix: bool = false;
let regsSize: u32 = BAR0_SIZE; // BAR0's 256 bytes, or flat's 16-byte window
let pbaOffset: u32 = 0;
let bar1Size: u32 = 0;
let highHalf: u32 = 0;
let invalid: bool = false;

// Set by regionAt() for the piece being cut.
let regionKind: i32 = KIND_HOLE;
let regionStart: u32 = 0;
let regionEnd: u32 = 0;

export function accessInit(mode: i32, vectors: u32): void {
  msix = mode == MODE_DOORBELL;
  regsSize = mode == MODE_FLAT ? FLAT_REGS_SIZE : BAR0_SIZE;
  if (!msix) return;
  // QEMU's exclusive MSI-X BAR: 4 KiB with the PBA in the upper half while the table fits in the
  // lower half; beyond that the PBA follows the table and the BAR is the next power of two.
  const table = vectors * 16;
  pbaOffset = table > 2048 ? table : 2048;
  let size: u32 = 4096;
  if (pbaOffset + pbaBytes() > size) size = pbaOffset + pbaBytes();
  bar1Size = size <= 1 ? 1 : <u32>1 << (32 - clz(size - 1));
}

/** The peer state registers need 32 bytes: a flat window grows to hold them (BAR0 has room). */
export function widenForPeerState(): void {
  if (regsSize < FLAT_REGS_SIZE_WITH_STATE) regsSize = FLAT_REGS_SIZE_WITH_STATE;
}

export function bar1Bytes(): u32 {
  return msix ? bar1Size : 0;
}

export function pbaStart(): u32 {
  return pbaOffset;
}

function regionAt(bar: u32, offset: u32): void {
  regionKind = KIND_HOLE;
  regionStart = offset;
  regionEnd = 0xffffffff;
  if (bar == 0) {
    if (offset < regsSize) {
      regionKind = KIND_REGS;
      regionStart = 0;
      regionEnd = regsSize;
    }
  } else if (bar == 1 && msix && offset < bar1Size) {
    const tableEnd = tableBytes();
    const pbaEnd = pbaOffset + pbaBytes();
    if (offset < tableEnd) {
      regionKind = KIND_TABLE;
      regionStart = 0;
      regionEnd = tableEnd;
    } else if (offset < pbaOffset) {
      regionEnd = pbaOffset;
    } else if (offset < pbaEnd) {
      regionKind = KIND_PBA;
      regionStart = pbaOffset;
      regionEnd = pbaEnd;
    } else {
      regionEnd = bar1Size;
    }
  }
}

/** Length of the next piece at `pos` with `left` bytes to go, after regionAt(). */
function pieceLength(pos: u32, left: u32): u32 {
  let l = left;
  if (regionEnd - pos < l) l = regionEnd - pos;
  // The MSI-X regions accept 8-byte accesses; registers and holes are cut at 4.
  let max: u32 = regionKind == KIND_TABLE || regionKind == KIND_PBA ? 8 : 4;
  const rel = pos - regionStart;
  const align = rel & (0 - rel);
  if (align != 0 && align < max) max = align;
  if (l > max) l = max;
  return <u32>1 << (31 - clz(l));
}

function readPiece(rel: u32, len: u32): u64 {
  if (regionKind == KIND_REGS) return <u64>bar0.readDword(rel);
  if (regionKind == KIND_HOLE || len < 4) {
    invalid = true; // MSI-X regions refuse accesses below 4 bytes
    return 0;
  }
  let value: u64 = 0;
  for (let i: u32 = 0; i < len; i += 4) {
    const dword = regionKind == KIND_TABLE ? tableReadDword(rel + i) : pbaReadDword(rel + i);
    value |= <u64>dword << (<u64>i << 3);
  }
  return value;
}

function writePiece(rel: u32, len: u32, value: u64): void {
  if (regionKind == KIND_REGS) {
    bar0.writeDword(rel, <u32>value);
    return;
  }
  if (regionKind != KIND_TABLE || len < 4) {
    invalid = true; // holes, the read-only PBA, and sub-dword MSI-X accesses
    return;
  }
  for (let i: u32 = 0; i < len; i += 4) {
    tableWriteDword(rel + i, <u32>(value >>> (<u64>i << 3)));
  }
}

function lengthMask(len: u32): u64 {
  return len >= 8 ? 0xffffffffffffffff : (<u64>1 << (<u64>len << 3)) - 1;
}

function sizeValid(size: u32): bool {
  return size >= 1 && size <= 8;
}

/** Reads `size` bytes (1..8) at `offset` of `bar`; returns the low 32 bits (see readHigh). */
export function mmioRead(bar: u32, offset: u32, size: u32): u32 {
  // Fast path for the common case; the general loop below gives the same result.
  if (bar == 0 && size == 4 && (offset & 3) == 0 && offset < regsSize) return alignedRead32(offset);
  invalid = false;
  bar0.beginAccess();
  let result: u64 = 0;
  if (!sizeValid(size) || offset > MAX_OFFSET) {
    invalid = true;
  } else {
    let done: u32 = 0;
    while (done < size) {
      const pos = offset + done;
      regionAt(bar, pos);
      const len = pieceLength(pos, size - done);
      const piece = readPiece(pos - regionStart, len) & lengthMask(len);
      result |= piece << (<u64>done << 3);
      done += len;
    }
  }
  if (invalid || bar0.accessMissed()) count(C_GUEST_INVALID);
  highHalf = <u32>(result >>> 32);
  return <u32>result;
}

/** High 32 bits of the last mmioRead. */
export function readHigh(): u32 {
  return highHalf;
}

/** Writes `size` bytes (1..8) of lo | hi << 32; returns how many routes it left to signal. */
export function mmioWrite(bar: u32, offset: u32, size: u32, lo: u32, hi: u32): i32 {
  if (bar == 0 && size == 4 && (offset & 3) == 0 && offset < regsSize) return alignedWrite32(offset, lo);
  bar0.beginAccess();
  invalid = false;
  if (!sizeValid(size) || offset > MAX_OFFSET) {
    invalid = true;
  } else {
    const value = (<u64>hi << 32) | <u64>lo;
    let done: u32 = 0;
    while (done < size) {
      const pos = offset + done;
      regionAt(bar, pos);
      const len = pieceLength(pos, size - done);
      writePiece(pos - regionStart, len, (value >>> (<u64>done << 3)) & lengthMask(len));
      done += len;
    }
  }
  if (invalid || bar0.accessMissed()) count(C_GUEST_INVALID);
  return bar0.signalCount();
}

/** Same as mmioRead(0, offset, 4), with one argument instead of three: the monitor's common case. */
export function read32(offset: u32): u32 {
  if ((offset & 3) != 0 || offset >= regsSize) return mmioRead(0, offset, 4);
  return alignedRead32(offset);
}

// One aligned dword of BAR0 (the callers checked alignment and range).
// @ts-ignore: decorator
@inline
function alignedRead32(offset: u32): u32 {
  bar0.beginAccess();
  const dword = bar0.readDword(offset);
  if (bar0.accessMissed()) count(C_GUEST_INVALID);
  highHalf = 0;
  return dword;
}

/** A 4-byte write of `value` to Doorbell (BAR0 0x0C), as write32(0x0C, value) makes it, with the
 *  handle as the result (-1: nothing to signal) instead of in signals: the doorbell's own entry,
 *  one call and no access bookkeeping, for the write a guest makes most. */
export function doorbell(value: u32): i32 {
  return bar0.route(value);
}

/** Same as mmioWrite(0, offset, 4, value, 0), with two arguments instead of five. */
export function write32(offset: u32, value: u32): i32 {
  if ((offset & 3) != 0 || offset >= regsSize) return mmioWrite(0, offset, 4, value, 0);
  return alignedWrite32(offset, value);
}

// @ts-ignore: decorator
@inline
function alignedWrite32(offset: u32, value: u32): i32 {
  bar0.beginAccess();
  bar0.writeDword(offset, value);
  if (bar0.accessMissed()) count(C_GUEST_INVALID);
  return bar0.signalCount();
}
