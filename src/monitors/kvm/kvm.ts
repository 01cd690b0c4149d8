// Minimal KVM bindings over the native addon: /dev/kvm, a VM with guest RAM from an ArrayBuffer,
// a vCPU whose exits are decoded from the mmap'ed kvm_run, a kicker to get it out of KVM_RUN,
// the in-kernel irqchip, GSI routing, MSI, ioeventfd and irqfd. Enough for the reference monitor
// (monitor.ts); exported as `ivshmem-ts/kvm` (src/kvm.ts).
import { native } from '../../os/binding.js';
import type { RawVcpuKicker } from '../../os/binding.js';
import { FdHandle } from '../../os/handle.js';

/** Byte offsets in struct kvm_run (checked by static_asserts in native/kvm/kvm.cc). */
export const KVM_RUN = {
  EXIT_REASON: 8, // u32
  MMIO_PHYS_ADDR: 32, // u64
  MMIO_DATA: 40, // u8[8]
  MMIO_LEN: 48, // u32
  MMIO_IS_WRITE: 52, // u8
  IO_DIRECTION: 32, // u8: 0 in, 1 out
  IO_SIZE: 33, // u8
  IO_PORT: 34, // u16
  IO_COUNT: 36, // u32
  IO_DATA_OFFSET: 40, // u64, from the start of kvm_run
} as const;

/** kvm_run.exit_reason values (linux/kvm.h). */
export const KVM_EXIT = {
  UNKNOWN: 0,
  EXCEPTION: 1,
  IO: 2,
  HYPERCALL: 3,
  DEBUG: 4,
  HLT: 5,
  MMIO: 6,
  IRQ_WINDOW_OPEN: 7,
  SHUTDOWN: 8,
  FAIL_ENTRY: 9,
  INTR: 10,
  INTERNAL_ERROR: 17,
} as const;

/** What KvmVcpu.run() reports when a signal interrupted KVM_RUN (EINTR). */
export const KVM_RUN_INTERRUPTED = -1;

/** KVM_CHECK_EXTENSION capability numbers used here. */
export const KVM_CAP = {
  IRQCHIP: 0,
  USER_MEMORY: 3,
  SET_TSS_ADDR: 4,
  IRQ_ROUTING: 25,
  IRQFD: 32,
  IOEVENTFD: 36,
  SIGNAL_MSI: 77,
  IMMEDIATE_EXIT: 136,
} as const;

/** The in-kernel irqchips a GSI can be routed to (KVM_IRQCHIP_*). */
export const KVM_IRQCHIP = { PIC_MASTER: 0, PIC_SLAVE: 1, IOAPIC: 2 } as const;

/** One KVM_SET_GSI_ROUTING entry. */
export type GsiRoute =
  | { gsi: number; kind: 'irqchip'; chip: number; pin: number }
  | { gsi: number; kind: 'msi'; address: number; data: number };

export interface KvmMmioExit {
  address: number;
  size: number;
  isWrite: boolean;
  /** The written value (little-endian): a number for 1..4 bytes, a bigint for 8; 0 for reads. */
  data: number | bigint;
}

export interface KvmIoExit {
  port: number;
  size: number;
  isOut: boolean;
  count: number;
  /** The first element written (OUT) — bytes live at kvm_run + dataOffset. */
  data: number;
  dataOffset: number;
}

export interface KvmExit {
  /** A KVM_EXIT value, or KVM_RUN_INTERRUPTED. */
  reason: number;
  mmio?: KvmMmioExit;
  io?: KvmIoExit;
}

/** /dev/kvm. */
export class Kvm extends FdHandle {
  private constructor(fd: number) {
    super(fd);
  }

  /** Opens /dev/kvm (checks API version 12); errors are coded (EACCES, ENOENT, …). */
  static open(): Kvm {
    return new Kvm(native().kvmOpen());
  }

  checkExtension(cap: number): number {
    return native().kvmCheckExtension(this.fd, cap);
  }

  createVm(): KvmVm {
    return new KvmVm(native().kvmCreateVm(this.fd));
  }
}

export class KvmVm extends FdHandle {
  readonly #vcpus: KvmVcpu[] = [];
  readonly #owned: ArrayBuffer[] = [];
  // Buffers KVM maps as guest RAM, kept reachable while their slot exists.
  readonly #slots = new Map<number, ArrayBuffer>();

  /** @internal use Kvm.createVm */
  constructor(fd: number) {
    super(fd);
  }

  /** Fresh anonymous MAP_SHARED memory (page multiple), unmapped when the VM closes. */
  allocMemory(size: number): ArrayBuffer {
    this.checkOpen();
    const buffer = native().kvmAllocMemory(size);
    this.#owned.push(buffer);
    return buffer;
  }

  /** Maps `memory` (page-aligned, e.g. an mmap) as guest RAM at `guestPhys` in `slot`; null deletes the slot. */
  setMemory(slot: number, guestPhys: number, memory: ArrayBuffer | null): void {
    native().kvmSetMemory(this.fd, slot, guestPhys, memory);
    if (memory === null) this.#slots.delete(slot);
    else this.#slots.set(slot, memory);
  }

  createVcpu(id = 0): KvmVcpu {
    const vcpu = new KvmVcpu(native().kvmCreateVcpu(this.fd, id));
    this.#vcpus.push(vcpu);
    return vcpu;
  }

  /**
   * Signals `eventfd` on a guest write of `len` bytes at `address` (matching `datamatch` unless null), with no exit.
   */
  ioeventfd(address: number, len: number, datamatch: number | bigint | null, eventfd: number): void {
    native().kvmIoeventfd(this.fd, address, len, datamatch ?? -1, eventfd);
  }

  removeIoeventfd(address: number, len: number, datamatch: number | bigint | null, eventfd: number): void {
    native().kvmIoeventfd(this.fd, address, len, datamatch ?? -1, eventfd, true);
  }

  createIrqchip(): void {
    native().kvmCreateIrqchip(this.fd);
  }

  irqLine(irq: number, level: 0 | 1): void {
    native().kvmIrqLine(this.fd, irq, level);
  }

  /** KVM_SIGNAL_MSI: true when a vCPU took it, false when the guest blocked it (e.g. its LAPIC is disabled). */
  signalMsi(address: number, data: number): boolean {
    return native().kvmSignalMsi(this.fd, address, data) > 0;
  }

  /** KVM_SET_GSI_ROUTING: replaces the whole table (so it must repeat the irqchip pins in use). */
  setGsiRouting(routes: readonly GsiRoute[]): void {
    const records = new Float64Array(routes.length * 5);
    routes.forEach((r, i) => {
      if (r.kind === 'irqchip') records.set([r.gsi, 1, r.chip, r.pin, 0], i * 5);
      else records.set([r.gsi, 2, r.address, 0, r.data], i * 5);
    });
    native().kvmSetGsiRouting(this.fd, records);
  }

  irqfd(gsi: number, eventfd: number): void {
    native().kvmIrqfd(this.fd, gsi, eventfd);
  }

  removeIrqfd(gsi: number, eventfd: number): void {
    native().kvmIrqfd(this.fd, gsi, eventfd, true);
  }

  protected override beforeClose(): void {
    for (const vcpu of this.#vcpus) vcpu.close();
    this.#slots.clear();
    for (const buffer of this.#owned) native().munmap(buffer);
    this.#owned.length = 0;
  }
}

export class KvmVcpu extends FdHandle {
  /** The mmap'ed kvm_run. */
  readonly runBuffer: ArrayBuffer;
  readonly #view: DataView;
  readonly #bytes: Uint8Array;

  /** @internal use KvmVm.createVcpu */
  constructor(fd: number) {
    super(fd);
    try {
      this.runBuffer = native().kvmRunBuffer(fd);
    } catch (err) {
      this.close();
      throw err;
    }
    this.#view = new DataView(this.runBuffer);
    this.#bytes = new Uint8Array(this.runBuffer);
  }

  /** A DataView of kvm_run (offsets in KVM_RUN). */
  get runView(): DataView {
    this.checkOpen();
    return this.#view;
  }

  /** 16-bit real mode, CS:IP = 0:rip, RFLAGS 0x2. */
  setRealMode(rip: number): void {
    native().kvmSetRealMode(this.fd, rip);
  }

  // One exit record per vCPU, refilled by every run(): the exit path allocates nothing.
  readonly #mmioExit: KvmMmioExit = { address: 0, size: 0, isWrite: false, data: 0 };
  readonly #ioExit: KvmIoExit = { port: 0, size: 0, isOut: false, count: 0, data: 0, dataOffset: 0 };
  readonly #exit: KvmExit = { reason: 0 };

  /**
   * Enters the guest until the next exit to userspace, and decodes it. The record returned is
   * this vCPU's own and is overwritten by the next run(): copy what must outlive it.
   */
  run(): KvmExit {
    const fd = this.fd;
    const reason = native().kvmRun(fd, this.runBuffer);
    const v = this.#view;
    const exit = this.#exit;
    exit.reason = reason;
    exit.mmio = undefined;
    exit.io = undefined;
    if (reason === KVM_EXIT.MMIO) {
      const m = this.#mmioExit;
      m.size = v.getUint32(KVM_RUN.MMIO_LEN, true);
      m.isWrite = v.getUint8(KVM_RUN.MMIO_IS_WRITE) !== 0;
      m.address = v.getUint32(KVM_RUN.MMIO_PHYS_ADDR + 4, true) * 2 ** 32 + v.getUint32(KVM_RUN.MMIO_PHYS_ADDR, true);
      m.data = m.isWrite ? this.#data(m.size) : 0;
      exit.mmio = m;
    } else if (reason === KVM_EXIT.IO) {
      const io = this.#ioExit;
      io.size = v.getUint8(KVM_RUN.IO_SIZE);
      io.dataOffset = v.getUint32(KVM_RUN.IO_DATA_OFFSET, true); // within the mmap'ed page(s)
      let data = 0;
      for (let i = io.size - 1; i >= 0; i--) data = data * 256 + this.#bytes[io.dataOffset + i];
      io.data = data;
      io.port = v.getUint16(KVM_RUN.IO_PORT, true);
      io.isOut = v.getUint8(KVM_RUN.IO_DIRECTION) === 1;
      io.count = v.getUint32(KVM_RUN.IO_COUNT, true);
      exit.io = io;
    }
    return exit;
  }

  #data(size: number): number | bigint {
    if (size === 8) return this.#view.getBigUint64(KVM_RUN.MMIO_DATA, true);
    let value = 0;
    for (let i = size - 1; i >= 0; i--) value = value * 256 + this.#bytes[KVM_RUN.MMIO_DATA + i];
    return value;
  }

  /** Completes the pending MMIO read: the guest sees `value` (little-endian) when it next runs. */
  completeMmioRead(value: number | bigint): void {
    this.checkOpen();
    if (typeof value === 'number') {
      // Reads of 1..4 bytes: no BigInt on the exit path.
      this.#view.setUint32(KVM_RUN.MMIO_DATA, value >>> 0, true);
      this.#view.setUint32(KVM_RUN.MMIO_DATA + 4, Math.floor(value / 2 ** 32) >>> 0, true);
    } else {
      this.#view.setBigUint64(KVM_RUN.MMIO_DATA, BigInt.asUintN(64, value), true);
    }
  }

  /** Completes the pending port IN: the guest sees `value` (little-endian, `io.size` bytes per element) on re-entry. */
  completeIoIn(io: KvmIoExit, value: number): void {
    this.checkOpen();
    for (let n = 0; n < io.count; n++) {
      let v = value;
      for (let i = 0; i < io.size; i++, v = Math.floor(v / 256))
        this.#bytes[io.dataOffset + n * io.size + i] = v & 0xff;
    }
  }

  /**
   * A kicker for this vCPU, created on the thread that runs it: while armed, readiness of any of
   * its fds makes the current (or next) run() return KVM_RUN_INTERRUPTED.
   */
  createKicker(): VcpuKicker {
    return new VcpuKicker(this);
  }

  protected override beforeClose(): void {
    if (this.runBuffer !== undefined) native().munmap(this.runBuffer);
  }
}

/** See KvmVcpu.createKicker. One owner (the monitor); close() is idempotent. */
export class VcpuKicker {
  readonly #raw: RawVcpuKicker;
  // The native armed flag (1 = armed), so arm() costs a load, not a native call, when nothing fired.
  readonly #armed: Int32Array;
  #closed = false;

  constructor(vcpu: KvmVcpu) {
    this.#raw = new (native().VcpuKicker)(vcpu.fd);
    this.#armed = this.#raw.armedView();
  }

  /** Replaces the fds watched (eventfds, sockets, an epoll fd). */
  setFds(fds: readonly number[]): void {
    if (this.#closed) return;
    this.#raw.setFds(Int32Array.from(fds));
  }

  /** Also kick when this thread's event loop has I/O ready or a timer due (see KvmMonitor.runAsync). */
  setLoop(on: boolean): void {
    if (this.#closed) return;
    this.#raw.setLoop(on);
    this.#loop = on;
  }

  #loop = false;

  /** Before each KVM_RUN: a kicker that fired watches again (no system call otherwise). */
  arm(): void {
    // Joined to the loop, arm() also tells the helper when the loop's next timer is due.
    if (!this.#closed && (this.#loop || Atomics.load(this.#armed, 0) === 0)) this.#raw.arm();
  }

  /** Kicks so far (still readable after close). */
  get kicks(): number {
    return this.#raw.kicks;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#raw.close();
  }
}
