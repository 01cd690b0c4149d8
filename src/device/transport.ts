// The interface an embedding virtual-machine monitor implements so the device can reach its guest,
// and the optional hooks through which a monitor's in-kernel fast paths follow the device.

/** Where the guest (through its firmware or OS) placed a BAR, or null while it is not mapped. */
export type BarAddress = bigint | null;

/** A guest write the kernel may carry to an eventfd by itself (QEMU's ioeventfd, KVM_IOEVENTFD). */
export interface IoEventFd {
  /** The BAR and the offset in it the write goes to (BAR0's Doorbell register). */
  readonly bar: number;
  readonly offset: number;
  /** The write's size in bytes, and the value it must carry to match. */
  readonly size: number;
  readonly datamatch: number;
  /** The eventfd a matching write signals: the route's, owned by the device's connection. */
  readonly fd: number;
  /** The route this is: the peer it rings, and which of its vectors. */
  readonly peer: number;
  readonly vector: number;
}

/** An MSI-X message: a 32-bit write of `data` at guest-physical `address`. */
export interface MsiMessage {
  readonly address: number;
  readonly data: number;
}

export interface VmmTransport {
  /** INTx pin level (intx mode only). Called only when the level changes. */
  setIrqLevel(level: 0 | 1): void;
  /** Deliver an MSI-X message: a 32-bit write of `data` at guest-physical `address`. */
  sendMsi(address: number, data: number, vector: number): void;
  /**
   * Optional: a BAR's guest-physical address changed (memory decoding toggled, or the BAR
   * register rewritten), or (null) the device stopped decoding it. A monitor routes BAR0/BAR1
   * accesses and maps BAR2 with this. A device that is closed or handed over unmaps every BAR.
   */
  barMapped?(bar: number, address: BarAddress): void;
  /**
   * Optional: a doorbell route of a server-joined device exists from now on; the monitor may have
   * the kernel signal its eventfd on a matching write without the write reaching the device.
   * Writes that match nothing still reach mmioWrite, which applies every rule.
   */
  addIoEventFd?(route: IoEventFd): void;
  /** Optional: that route is gone; called before its eventfd is closed or handed over. */
  removeIoEventFd?(route: IoEventFd): void;
  /**
   * Optional, for a device created with vectorWait: 'manual': own vector `vector` now arrives on
   * eventfd `fd`, or (fd -1) no longer does, before that fd is closed or handed over. The embedder
   * waits on it and calls fireVector(vector) once per batch of signals it reads.
   */
  vectorFd?(vector: number, fd: number): void;
  /**
   * Optional, with vectorWait: 'manual': own vector `vector` (on eventfd `fd`) became deliverable
   * as `message` (MSI-X enabled, function and entry unmasked, bus mastering on; called again when
   * the message changes), or stopped being deliverable (null). While it is deliverable the monitor
   * may have the kernel turn each signal on `fd` into `message` (a KVM irqfd); from null on, its
   * signals must reach fireVector again, so that the device keeps the pending bit while the vector
   * is masked and counts what it drops while MSI-X is off.
   */
  vectorDeliverable?(vector: number, fd: number, message: MsiMessage | null): void;
}

/** Where doorbell writes go: the glue signals the route handle (an eventfd, with native handles). */
export interface DoorbellSink {
  ring(handle: number): void;
}
