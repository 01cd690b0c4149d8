// BAR0: the four ivshmem registers, at the granularity QEMU implements them (one 4-byte access at
// a time). Reads match the exact offset, so unaligned reads see 0; writes ignore the low two
// address bits, so a byte written anywhere in a register replaces the whole register. In flat
// mode the same four sit in a 16-byte window: IntrMask and IntrStatus are reserved (read 0, writes
// ignored), and the Doorbell's vector field is 16 bits wide.
import { count } from "./counters";
import { lookup, NO_PEER } from "./routes";
import { getIntrMask, setIntrMask, setIntrStatus, takeIntrStatus } from "./interrupts";
import { peerStateOn, publishState, stateSlot, stateTableOffset, stateValue } from "./peer-state";
import {
  C_DOORBELL_NO_PEER, C_DOORBELL_NO_VECTOR, C_DOORBELL_SENT, DOORBELL_FLAT_VECTOR_MASK, DOORBELL_PEER_SHIFT,
  DOORBELL_VECTOR_MASK, MODE_FLAT,
  REG_DOORBELL as DOORBELL, REG_INTRMASK as INTRMASK, REG_INTRSTATUS as INTRSTATUS, REG_IVPOSITION as IVPOSITION,
  REG_STATE, REG_STATE_SLOT, REG_STATE_TABLE,
} from "./abi";

/** Handles that the last write asks the glue to signal; an access rings at most a few. */
export const SIGNAL_SLOTS: u32 = 8;
export const signals: usize = memory.data(SIGNAL_SLOTS << 2);
let signalled: u32 = 0;
let missed: bool = false;
let position: u32 = 0;
let flat: bool = false;
let vectorMask: u32 = DOORBELL_VECTOR_MASK;

export function registersInit(mode: i32): void {
  flat = mode == MODE_FLAT;
  vectorMask = flat ? DOORBELL_FLAT_VECTOR_MASK : DOORBELL_VECTOR_MASK;
}

export function setPosition(id: u32): void {
  position = id;
}

export function beginAccess(): void {
  signalled = 0;
  missed = false;
}

export function accessMissed(): bool {
  return missed;
}

export function signalCount(): i32 {
  return <i32>signalled;
}

// @ts-ignore: decorator
@inline
export function readDword(offset: u32): u32 {
  if (flat && (offset == INTRMASK || offset == INTRSTATUS)) return 0; // reserved in flat's revision 1
  if (offset == INTRMASK) return getIntrMask();
  if (offset == INTRSTATUS) return takeIntrStatus();
  if (offset == IVPOSITION) return position;
  if (peerStateOn()) {
    if (offset == REG_STATE) return stateValue();
    if (offset == REG_STATE_TABLE) return stateTableOffset();
    if (offset == REG_STATE_SLOT) return stateSlot();
  }
  missed = true; // Doorbell is write-only; the rest is reserved or unaligned
  return 0;
}

// @ts-ignore: decorator
@inline
export function writeDword(offset: u32, value: u32): void {
  const reg = offset & 0xfc;
  if (reg == DOORBELL) ring(value);
  else if (flat && (reg == INTRMASK || reg == INTRSTATUS)) return; // reserved: ignored
  else if (reg == INTRMASK) setIntrMask(value);
  else if (reg == INTRSTATUS) setIntrStatus(value);
  else if (reg == REG_STATE && peerStateOn()) publishState(value);
  else missed = true; // IVPosition and the state table's place are read-only; the rest is reserved
}

/** Doorbell: bits 31..16 name the peer, bits 7..0 the vector (bits 15..8 are ignored, as in QEMU;
 *  flat mode reads bits 15..0, and a vector past the peer's is dropped, which QEMU's flat does not check).
 *  The route's handle, counted as sent, or -1 (counted as dropped: no such peer or vector). */
// @ts-ignore: decorator
@inline
export function route(value: u32): i32 {
  const handle = lookup(value >>> DOORBELL_PEER_SHIFT, value & vectorMask);
  if (handle >= 0) {
    count(C_DOORBELL_SENT);
    return handle;
  }
  count(handle == NO_PEER ? C_DOORBELL_NO_PEER : C_DOORBELL_NO_VECTOR);
  return -1;
}

// @ts-ignore: decorator
@inline
function ring(value: u32): void {
  const handle = route(value);
  if (handle < 0) return;
  if (signalled < SIGNAL_SLOTS) store<i32>(signals + (signalled << 2), handle);
  signalled++;
}
