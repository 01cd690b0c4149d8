// What the device counts, read out of the core as the objects a monitor sees: doorbells sent and
// dropped, interrupts delivered, pended and dropped (by reason), guest accesses that hit nothing,
// and per own vector what became of its signals. The core keeps the numbers; this names them.
import * as abi from '../core/abi.js';
import type { DeviceCore } from '../core/abi.js';

export interface DeviceCounters {
  doorbellsSent: number;
  doorbellsDropped: { noPeer: number; noVector: number };
  interruptsDelivered: number;
  interruptsPended: number;
  interruptsDropped: { msixDisabled: number; noBusMaster: number; badVector: number };
  /** Guest accesses that hit no register: read as 0 or ignored. */
  invalidGuestAccesses: number;
  /** Calls into the VMM's transport (sendMsi, setIrqLevel) that threw: see the 'error' event. */
  transportErrors: number;
}

/** One of our own vectors: signals that arrived, and what became of them. */
export interface VectorCounters {
  fired: number;
  delivered: number;
  /** Left pending while masked (delivered later, when unmasked, counts again as delivered). */
  pended: number;
  dropped: { msixDisabled: number; noBusMaster: number };
}

/** What the glue counts beside the core: accesses it refused before the core saw them, and transport
 *  calls that threw. */
export interface GlueCounts {
  glueInvalid: number;
  transportErrors: number;
}

export function readCounters(core: DeviceCore, glue: GlueCounts): DeviceCounters {
  const c = (id: number) => core.counterValue(id);
  return {
    doorbellsSent: c(abi.C_DOORBELL_SENT),
    doorbellsDropped: { noPeer: c(abi.C_DOORBELL_NO_PEER), noVector: c(abi.C_DOORBELL_NO_VECTOR) },
    interruptsDelivered: c(abi.C_IRQ_DELIVERED),
    interruptsPended: c(abi.C_IRQ_PENDED),
    interruptsDropped: {
      msixDisabled: c(abi.C_IRQ_DROPPED_DISABLED),
      noBusMaster: c(abi.C_IRQ_DROPPED_NO_MASTER),
      badVector: c(abi.C_IRQ_DROPPED_BAD_VECTOR),
    },
    invalidGuestAccesses: c(abi.C_GUEST_INVALID) + glue.glueInvalid,
    transportErrors: glue.transportErrors,
  };
}

export function readVectorCounters(core: DeviceCore, vectors: number): VectorCounters[] {
  const c = (v: number, kind: number) => core.vectorCounter(v, kind);
  return Array.from({ length: vectors }, (_, v) => ({
    fired: c(v, abi.V_FIRED),
    delivered: c(v, abi.V_DELIVERED),
    pended: c(v, abi.V_PENDED),
    dropped: { msixDisabled: c(v, abi.V_DROPPED_DISABLED), noBusMaster: c(v, abi.V_DROPPED_NO_MASTER) },
  }));
}
