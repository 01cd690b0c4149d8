// Interrupt delivery: the MSI-X table and pending-bit array (doorbell mode) and the INTx line
// (seed mode), and flat mode's one IRQ line, pulsed once per interrupt. Follows the PCI 3.0 MSI-X rules as QEMU applies them: a vector is masked when its
// entry's mask bit is set or the function is masked (MSI-X disabled, or Function Mask set); a
// fired vector that is masked sets its pending bit and is delivered when it becomes unmasked.
import { alloc } from "./arena";
import { peerStateOn, restoreStateValue, stateValue } from "./peer-state";
import { count } from "./counters";
import {
  C_IRQ_DELIVERED, C_IRQ_DROPPED_BAD_VECTOR, C_IRQ_DROPPED_DISABLED, C_IRQ_DROPPED_NO_MASTER,
  C_IRQ_PENDED, CTRL_BUS_MASTER, CTRL_INTX_DISABLE, CTRL_MSIX_ENABLE, CTRL_MSIX_MASKALL,
  MODE_DOORBELL, MODE_FLAT, MODE_INTX, MSIX_ENTRY_ADDR_HI, MSIX_ENTRY_ADDR_LO, MSIX_ENTRY_CTRL, MSIX_ENTRY_DATA,
  MSIX_ENTRY_MASKBIT, MSIX_ENTRY_SIZE, V_DELIVERED, V_DROPPED_DISABLED, V_DROPPED_NO_MASTER, V_FIRED, V_PENDED,
  VECTOR_COUNTER_KINDS,
} from "./abi";

// The embedding monitor's side, reached through the glue.
@external("env", "sendMsi")
declare function hostSendMsi(addressLo: u32, addressHi: u32, data: u32, vector: u32): void;
@external("env", "setIrqLevel")
declare function hostSetIrqLevel(level: i32): void;

let mode: i32 = 0;
let vectors: u32 = 0;
let table: usize = 0;
let pba: usize = 0;
let control: u32 = 0;
let vectorCounts: usize = 0; // VECTOR_COUNTER_KINDS f64 cells per vector

// @ts-ignore: decorator
@inline
function countVector(v: u32, kind: u32): void {
  const at = vectorCounts + ((<usize>v * VECTOR_COUNTER_KINDS + kind) << 3);
  store<f64>(at, load<f64>(at) + 1.0);
}

/** One of a vector's counters (V_*); 0 for a vector or kind that does not exist. */
export function vectorCounter(v: u32, kind: u32): f64 {
  if (v >= vectors || kind >= VECTOR_COUNTER_KINDS) return 0;
  return load<f64>(vectorCounts + ((<usize>v * VECTOR_COUNTER_KINDS + kind) << 3));
}

// BAR0 interrupt registers; inert outside INTx mode, as in QEMU since 5.0.
let intrMask: u32 = 0;
let intrStatus: u32 = 0;
let intxLevel: bool = false; // the device's own line: (IntrStatus & IntrMask) != 0
let lineReported: bool = false; // what the monitor was last told

export function interruptsInit(deviceMode: i32, vectorCount: u32): void {
  mode = deviceMode;
  vectors = vectorCount;
  const countBytes = (vectors * VECTOR_COUNTER_KINDS) << 3;
  if (countBytes > 0) vectorCounts = alloc(countBytes); // alloc() hands out zeroed blocks
  if (mode == MODE_DOORBELL) {
    table = alloc(vectors * MSIX_ENTRY_SIZE);
    pba = alloc(pbaBytes());
  }
  interruptsReset();
}

// Only doorbell mode has MSI-X; the other modes have no table and no PBA.
export function pbaBytes(): u32 {
  return mode == MODE_DOORBELL ? ((vectors + 63) & ~63) >>> 3 : 0;
}

export function tableBytes(): u32 {
  return mode == MODE_DOORBELL ? vectors * MSIX_ENTRY_SIZE : 0;
}

export function interruptsReset(): void {
  intrMask = 0;
  intrStatus = 0;
  control = 0;
  if (mode == MODE_DOORBELL) {
    memory.fill(table, 0, tableBytes());
    memory.fill(pba, 0, pbaBytes());
    for (let v: u32 = 0; v < vectors; v++) {
      store<u32>(table + v * MSIX_ENTRY_SIZE + MSIX_ENTRY_CTRL, MSIX_ENTRY_MASKBIT);
    }
  }
  updateLine();
}

// ---- INTx ----------------------------------------------------------------------------------

/** The one place the INTx level is derived; the monitor hears only changes. */
function updateLine(): void {
  const line = lineLevel();
  if (line != lineReported) reportLine(line);
}

function lineLevel(): bool {
  intxLevel = mode == MODE_INTX && (intrStatus & intrMask) != 0;
  // INTx Disable (command bit 10) gates the pin, not the device's own level.
  return intxLevel && (control & CTRL_INTX_DISABLE) == 0;
}

function reportLine(line: bool): void {
  lineReported = line;
  hostSetIrqLevel(line ? 1 : 0);
}

export function intxAsserted(): i32 {
  return intxLevel ? 1 : 0;
}

export function getIntrMask(): u32 {
  return intrMask;
}

export function setIntrMask(value: u32): void {
  intrMask = value;
  updateLine();
}

export function setIntrStatus(value: u32): void {
  intrStatus = value;
  updateLine();
}

/** Reading IntrStatus returns it and clears it. */
export function takeIntrStatus(): u32 {
  const value = intrStatus;
  intrStatus = 0;
  updateLine();
  return value;
}

// ---- MSI-X ---------------------------------------------------------------------------------

// @ts-ignore: decorator
@inline
function functionMasked(): bool {
  return (control & CTRL_MSIX_ENABLE) == 0 || (control & CTRL_MSIX_MASKALL) != 0;
}

// @ts-ignore: decorator
@inline
function entryMasked(v: u32): bool {
  return (load<u32>(table + v * MSIX_ENTRY_SIZE + MSIX_ENTRY_CTRL) & MSIX_ENTRY_MASKBIT) != 0;
}

function vectorMasked(v: u32, fmask: bool): bool {
  return fmask || entryMasked(v);
}

function pendingWord(v: u32): usize {
  return pba + ((v >>> 5) << 2);
}

function isPending(v: u32): bool {
  return (load<u32>(pendingWord(v)) & (1 << (v & 31))) != 0;
}

function setPending(v: u32, on: bool): void {
  const at = pendingWord(v);
  const bit: u32 = 1 << (v & 31);
  store<u32>(at, on ? load<u32>(at) | bit : load<u32>(at) & ~bit);
}

function deliver(v: u32): void {
  // Without bus mastering the message write goes nowhere, as on a real bus.
  if ((control & CTRL_BUS_MASTER) == 0) {
    count(C_IRQ_DROPPED_NO_MASTER);
    countVector(v, V_DROPPED_NO_MASTER);
    return;
  }
  const entry = table + v * MSIX_ENTRY_SIZE;
  count(C_IRQ_DELIVERED);
  countVector(v, V_DELIVERED);
  hostSendMsi(load<u32>(entry, MSIX_ENTRY_ADDR_LO), load<u32>(entry, MSIX_ENTRY_ADDR_HI), load<u32>(entry, MSIX_ENTRY_DATA), v);
}

function notify(v: u32): void {
  if (vectorMasked(v, functionMasked())) {
    count(C_IRQ_PENDED);
    countVector(v, V_PENDED);
    setPending(v, true);
  } else {
    deliver(v);
  }
}

function maskUpdated(v: u32, wasMasked: bool): void {
  // Only a vector that was masked and no longer is delivers what it has pending.
  if (!wasMasked || vectorMasked(v, functionMasked())) return;
  if (isPending(v)) {
    setPending(v, false);
    notify(v);
  }
}

/** One of the device's own vectors fired (its eventfd was signalled). */
export function vectorFired(v: u32): void {
  if (v >= vectors) {
    count(C_IRQ_DROPPED_BAD_VECTOR);
    return;
  }
  countVector(v, V_FIRED);
  if (mode == MODE_FLAT) {
    // A pulse, as QEMU's flat device gives it: an edge-triggered controller latches it, and the
    // line is low again before the guest could look (so lineReported stays false).
    count(C_IRQ_DELIVERED);
    countVector(v, V_DELIVERED);
    hostSetIrqLevel(1);
    hostSetIrqLevel(0);
    return;
  }
  if (mode == MODE_INTX) {
    intrStatus |= 1;
    count(C_IRQ_DELIVERED);
    countVector(v, V_DELIVERED);
    updateLine();
    return;
  }
  // QEMU consumes the event and loses it while MSI-X is off.
  if ((control & CTRL_MSIX_ENABLE) == 0) {
    count(C_IRQ_DROPPED_DISABLED);
    countVector(v, V_DROPPED_DISABLED);
    return;
  }
  notify(v);
}

/** 1 while a signal on vector v would go out at once as its MSI-X message (MSI-X enabled, the
 *  function and the entry unmasked, bus mastering on), else 0: while it is 1 a monitor may have
 *  the kernel deliver the vector's eventfd itself (a KVM irqfd), and this core never sees it. */
export function vectorDeliverable(v: u32): i32 {
  if (mode != MODE_DOORBELL || v >= vectors) return 0;
  return !functionMasked() && !entryMasked(v) && (control & CTRL_BUS_MASTER) != 0 ? 1 : 0;
}

/** New control bits from the PCI function (command register and MSI-X Message Control). */
export function setControl(flags: u32): void {
  const wasFunctionMasked = functionMasked();
  control = flags;
  updateLine();
  if (mode != MODE_DOORBELL || (control & CTRL_MSIX_ENABLE) == 0) return;
  if (functionMasked() == wasFunctionMasked) return;
  for (let v: u32 = 0; v < vectors; v++) {
    maskUpdated(v, vectorMasked(v, wasFunctionMasked));
  }
}

export function getControl(): u32 {
  return control;
}

export function tableReadDword(offset: u32): u32 {
  return load<u32>(table + offset);
}

export function tableWriteDword(offset: u32, value: u32): void {
  const v = offset / MSIX_ENTRY_SIZE;
  const was = vectorMasked(v, functionMasked());
  store<u32>(table + offset, value);
  maskUpdated(v, was);
}

export function pbaReadDword(offset: u32): u32 {
  return load<u32>(pba + offset);
}

// ---- state ---------------------------------------------------------------------------------

// State words: IntrMask, IntrStatus, control, MSI-X table dwords, PBA dwords, and the State
// register's value when the peer state table is on.
export function stateWords(): i32 {
  return <i32>(3 + (tableBytes() >>> 2) + (pbaBytes() >>> 2) + (peerStateOn() ? 1 : 0));
}

export function stateRead(i: u32): u32 {
  if (i == 0) return intrMask;
  if (i == 1) return intrStatus;
  if (i == 2) return control;
  const t = tableBytes() >>> 2;
  if (i - 3 < t) return load<u32>(table + ((i - 3) << 2));
  if (i - 3 - t < (pbaBytes() >>> 2)) return load<u32>(pba + ((i - 3 - t) << 2));
  if (peerStateOn() && i - 3 - t == (pbaBytes() >>> 2)) return stateValue();
  return 0;
}

export function stateWrite(i: u32, value: u32): void {
  if (i == 0) intrMask = value;
  else if (i == 1) intrStatus = value;
  else if (i == 2) control = value;
  else {
    const t = tableBytes() >>> 2;
    if (i - 3 < t) store<u32>(table + ((i - 3) << 2), value);
    else if (i - 3 - t < (pbaBytes() >>> 2)) store<u32>(pba + ((i - 3 - t) << 2), value);
    else if (peerStateOn() && i - 3 - t == (pbaBytes() >>> 2)) restoreStateValue(value);
  }
}

/** After a state load: the line follows the registers, and pending unmasked vectors fire. */
export function stateCommit(): void {
  const line = lineLevel();
  if (mode == MODE_INTX) reportLine(line); // the monitor's view may predate the load
  if (mode != MODE_DOORBELL || (control & CTRL_MSIX_ENABLE) == 0) return;
  for (let v: u32 = 0; v < vectors; v++) maskUpdated(v, true);
}
