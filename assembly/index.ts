// The ivshmem device core as a WebAssembly module: BAR0 registers (or ivshmem-flat's register
// window), doorbell routing, MSI-X, INTx and flat IRQ logic, counters and state. Every export takes and returns numbers; nothing is
// allocated after init(). One instance models one device.
import { FLAT_MAX_VECTORS, MAX_VECTORS, MODE_DOORBELL, MODE_FLAT, MODE_INTX, MODE_PLAIN } from "./abi";
import { accessInit, bar1Bytes, pbaStart, widenForPeerState } from "./access";
import { peerStateEnable } from "./peer-state";
import { interruptsInit, interruptsReset } from "./interrupts";
import { routesInit } from "./routes";
import { registersInit, setPosition, signals } from "./registers";

export { doorbell, mmioRead, mmioWrite, read32, readHigh, write32 } from "./access";
export { addRoute, removePeer, peerVectors, routeDoorbells } from "./routes";
export {
  vectorFired, vectorDeliverable, vectorCounter, setControl, getControl, intxAsserted, stateWords, stateRead, stateWrite, stateCommit,
} from "./interrupts";
export { counterValue } from "./counters";
export { setPosition } from "./registers";

let ready: bool = false;

/** Sets the device up once; returns 0, or -1 for an invalid mode or vector count. */
export function init(mode: i32, vectors: u32, position: u32): i32 {
  if (ready) return -1;
  if (mode != MODE_PLAIN && mode != MODE_DOORBELL && mode != MODE_INTX && mode != MODE_FLAT) return -1;
  if (vectors > MAX_VECTORS || (mode == MODE_DOORBELL && vectors == 0)) return -1;
  if (mode == MODE_FLAT && (vectors == 0 || vectors > FLAT_MAX_VECTORS)) return -1;
  routesInit(vectors);
  interruptsInit(mode, vectors);
  accessInit(mode, vectors);
  registersInit(mode);
  setPosition(position);
  ready = true;
  return 0;
}

/** Turns on the peer state registers (once the device knows its table and its entry). */
export function enableStateTable(offset: u32, slot: u32): void {
  peerStateEnable(offset, slot);
  widenForPeerState();
}

/** Device reset: registers and MSI-X as after a PCI reset; routes, id and counters are kept. */
export function reset(): void {
  interruptsReset();
}

/** Where the handles to signal after mmioWrite are, as an i32 array in linear memory. */
export function signalsPointer(): usize {
  return signals;
}

export function msixBarSize(): u32 {
  return bar1Bytes();
}

export function msixPbaOffset(): u32 {
  return pbaStart();
}

/** Does nothing: the benchmark's measure of one JS→WASM call. */
export function nop(): void {}

/** Does nothing with write32's signature (two i32 in, one out): the same call, arguments and
 *  result crossing too, so what write32 costs beyond it is its own work. */
export function nopWrite(offset: u32, value: u32): i32 {
  return 0;
}
