// The interface an embedding virtual-machine monitor implements so the device can reach its guest.

/** Where the guest (through its firmware or OS) placed a BAR, or null while it is not mapped. */
export type BarAddress = bigint | null;

export interface VmmTransport {
  /** INTx pin level (intx mode only). Called only when the level changes. */
  setIrqLevel(level: 0 | 1): void;
  /** Deliver an MSI-X message: a 32-bit write of `data` at guest-physical `address`. */
  sendMsi(address: number, data: number, vector: number): void;
  /**
   * Optional: a BAR's guest-physical address changed (memory decoding toggled, or the BAR
   * register rewritten). A monitor routes BAR0/BAR1 accesses and maps BAR2 with this.
   */
  barMapped?(bar: number, address: BarAddress): void;
}

/** Where doorbell writes go: the glue signals the route handle (an eventfd, with native handles). */
export interface DoorbellSink {
  ring(handle: number): void;
}
