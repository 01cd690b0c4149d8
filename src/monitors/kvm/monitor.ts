// KvmMonitor: a reference virtual-machine monitor on KVM for one IvshmemDevice, the way QEMU's
// pc machine hosts it, cut down to what a test guest needs:
//   - guest RAM at GPA 0 (an anonymous mmap, one KVM slot);
//   - a PCI host bridge on ports 0xcf8 (CONFIG_ADDRESS) / 0xcfc..0xcff (CONFIG_DATA): config
//     cycles for 00:<slot>.0 go to device.configRead/configWrite, every other slot reads as all-ones;
//   - BAR0 (and BAR1) accesses exit to userspace and go to device.mmioRead/mmioWrite, at whatever
//     address the guest programmed (learned from the transport's barMapped callback);
//   - BAR2 mapped as guest RAM straight from device.sharedMemory.buffer (zero copy), when that
//     buffer is an mmap'ed ArrayBuffer; otherwise BAR2 accesses exit and are dispatched too;
//   - INTx through the in-kernel irqchip: setIrqLevel drives the IRQ line `irq` (a PIC pin);
//   - MSI-X messages through KVM_SIGNAL_MSI (KVM drops them until the guest enables its LAPIC);
//   - optionally (`irqfd: true`) QEMU's inbound fast path: each of our own vectors the device
//     says MSI-X would deliver (its vectorDeliverable hook) is a KVM irqfd routed to its message
//     (irqfd-routes.ts);
//   - optionally (`ioeventfd: true`) QEMU's doorbell fast path: one KVM ioeventfd per doorbell
//     route the device announces (its addIoEventFd hook; ioeventfd-routes.ts), so a matching ring
//     signals the peer's eventfd in the kernel with no exit.
// The monitor learns all of this from the device's transport hooks alone: it never listens to the
// server connection or reads the MSI-X table to decide what KVM delivers.
// One real-mode vCPU runs on the thread that created the monitor — give it a worker thread, as
// KVM_RUN blocks: run() returns when the guest writes the "done" port, or when another thread
// (or process) signals `kickFd`. While the guest runs, a VcpuKicker (native/kvm/kick.cc) watches
// our own vectors' eventfds (the ones not handed to KVM as irqfds) and kicks the vCPU out of
// KVM_RUN, so a peer's doorbell reaches the device core and the guest even while it sits in HLT.
import { IvshmemDevice } from '../../device/device.js';
import type { IvshmemDeviceOptions } from '../../device/options.js';
import type { BarAddress, IoEventFd, MsiMessage, VmmTransport } from '../../device/transport.js';
import { PCI_INTERRUPT_LINE } from '../../device/pci/registers.js';
import { drainEventfd, EventFd } from '../../os/eventfd.js';
import { IvshmemError } from '../../errors.js';
import { Kvm, KVM_CAP, KVM_EXIT, KVM_RUN_INTERRUPTED, KvmVcpu, KvmVm, VcpuKicker } from './kvm.js';
import { IrqfdRoutes } from './irqfd-routes.js';
import { IoeventfdRoutes } from './ioeventfd-routes.js';
import { REG_DOORBELL } from '../../core/abi.js';
import type { IoeventfdRoute } from './ioeventfd-routes.js';
import type { IrqfdRoute } from './irqfd-routes.js';
import type { KvmExit, KvmIoExit, KvmMmioExit } from './kvm.js';

export const PCI_CONFIG_ADDRESS = 0xcf8;
export const PCI_CONFIG_DATA = 0xcfc;
/** The guest's "done" port: an OUT here ends run() with the written value. */
export const MONITOR_DONE_PORT = 0xf4;

const RAM_SLOT = 0;
const BAR2_SLOT = 1;

export interface KvmMonitorOptions {
  /** Guest RAM at GPA 0, a page multiple; default 512 KiB (the rest below 1 MiB is left for BARs). */
  ramSize?: number;
  /** The PCI slot of the device on bus 0; default 3 (00:03.0). */
  slot?: number;
  /** The PIC pin (GSI) INTx drives; default 5. Also written to the Interrupt Line register. */
  irq?: number;
  /** The done port; default MONITOR_DONE_PORT. */
  donePort?: number;
  /**
   * Doorbell fast path (QEMU's `ioeventfd=on`): register a KVM ioeventfd per (peer, vector) of a
   * server-joined device while BAR0 decodes. Default false (every doorbell exits to the WASM core).
   * Falls back to the WASM path when KVM lacks KVM_CAP_IOEVENTFD (see KvmMonitor.ioeventfd).
   */
  ioeventfd?: boolean;
  /**
   * Inbound fast path (QEMU's irqfd use with MSI-X): each own vector MSI-X would deliver becomes
   * a KVM irqfd. Default false. Needs a device created with vectorWait: 'manual' (createDevice
   * does that) and KVM_CAP_IRQFD + KVM_CAP_IRQ_ROUTING; otherwise the WASM path (see KvmMonitor.irqfd).
   */
  irqfd?: boolean;
}

export interface MonitorRunResult {
  /** The value the guest wrote to the done port; null when run() returned because kickFd was signalled. */
  done: number | null;
  /** KVM_RUN returns during this run. */
  exits: number;
}

export interface MonitorStats {
  exits: number;
  configReads: number;
  configWrites: number;
  /** BAR accesses dispatched to the device, by BAR index. */
  mmio: [number, number, number];
  /** MMIO outside every BAR (reads as all-ones, writes ignored). */
  unassignedMmio: number;
  /** Port I/O to ports nobody decodes. */
  unassignedIo: number;
  irqLevelChanges: number;
  /** MSI-X messages the device sent through KVM_SIGNAL_MSI: accepted, and refused by the guest (LAPIC off). */
  msiSignalled: number;
  msiBlocked: number;
  /** Times the kicker got the vCPU out of KVM_RUN, and own-vector signals then passed to the device core. */
  kicks: number;
  vectorWakeups: number;
  /** Doorbell writes that exited to the WASM core (the fast path's misses, or every doorbell without it). */
  doorbellExits: number;
  /** KVM_IOEVENTFD assign / deassign calls that succeeded, and those KVM refused (route left to the WASM path). */
  ioeventfdsAssigned: number;
  ioeventfdsDeassigned: number;
  ioeventfdErrors: number;
  /**
   * KVM_IRQFD assigns that succeeded, and irqfd or routing-table calls KVM refused (those vectors stay on the WASM
   * path).
   */
  irqfdsAssigned: number;
  irqfdErrors: number;
}

/** A monitor misuse or a guest exit it cannot handle: code ERR_IVSHMEM_KVM; `exit` when a guest exit caused it. */
export class KvmMonitorError extends IvshmemError {
  constructor(
    message: string,
    readonly exit?: KvmExit,
  ) {
    super('ERR_IVSHMEM_KVM', message);
    this.name = 'KvmMonitorError';
  }
}

export class KvmMonitor implements VmmTransport {
  readonly vm: KvmVm;
  readonly vcpu: KvmVcpu;
  /** Guest RAM (GPA 0 .. ramSize). */
  readonly ram: Uint8Array;
  readonly slot: number;
  readonly irq: number;
  readonly donePort: number;
  readonly stats: MonitorStats = {
    exits: 0,
    configReads: 0,
    configWrites: 0,
    mmio: [0, 0, 0],
    unassignedMmio: 0,
    unassignedIo: 0,
    irqLevelChanges: 0,
    msiSignalled: 0,
    msiBlocked: 0,
    kicks: 0,
    vectorWakeups: 0,
    doorbellExits: 0,
    ioeventfdsAssigned: 0,
    ioeventfdsDeassigned: 0,
    ioeventfdErrors: 0,
    irqfdsAssigned: 0,
    irqfdErrors: 0,
  };
  /**
   * Whether the doorbell fast path is on: asked for, and KVM supports ioeventfd. Otherwise doorbells take the WASM
   * path.
   */
  readonly ioeventfd: boolean;
  /** Whether the irqfd fast path is on: asked for, and KVM supports irqfd and GSI routing. */
  readonly irqfd: boolean;
  /**
   * An eventfd: signal it (from any thread or process holding it) to make run() return
   * { done: null }. Owned by the monitor.
   */
  readonly kickFd: number;

  #device: IvshmemDevice | undefined;
  #configAddress = 0;
  // Where each BAR decodes (from barMapped; -1 while it does not), and each BAR's size.
  readonly #barBase = [-1, -1, -1];
  readonly #barSize = [0, 0, 0];
  /** Whether BAR2 is currently a KVM memory slot (else its accesses exit). */
  #bar2Slot = false;
  #closed = false;
  /** The doorbell routes, followed while the outbound fast path is on. */
  readonly #ioeventfds: IoeventfdRoutes;
  readonly #kick: EventFd;
  /** Null when KVM lacks KVM_CAP_IMMEDIATE_EXIT: then nothing interrupts a running guest. */
  readonly #kicker: VcpuKicker | null;
  readonly #irqfds: IrqfdRoutes | null;
  /** Own vectors whose eventfds this monitor waits on (vectorWait 'manual'), index = vector. */
  #ownFds: number[] = [];

  constructor(kvm: Kvm, options: KvmMonitorOptions = {}) {
    const ramSize = options.ramSize ?? 0x80000;
    this.slot = options.slot ?? 3;
    this.irq = options.irq ?? 5;
    this.donePort = options.donePort ?? MONITOR_DONE_PORT;
    this.ioeventfd = options.ioeventfd === true && kvm.checkExtension(KVM_CAP.IOEVENTFD) > 0;
    this.irqfd =
      options.irqfd === true && kvm.checkExtension(KVM_CAP.IRQFD) > 0 && kvm.checkExtension(KVM_CAP.IRQ_ROUTING) > 0;
    const canKick = kvm.checkExtension(KVM_CAP.IMMEDIATE_EXIT) > 0;
    this.#kick = EventFd.create();
    this.kickFd = this.#kick.fd;
    try {
      this.vm = kvm.createVm();
    } catch (err) {
      this.#kick.close();
      throw err;
    }
    let kicker: VcpuKicker | null = null;
    try {
      this.vm.createIrqchip(); // before any vCPU
      const memory = this.vm.allocMemory(ramSize);
      this.vm.setMemory(RAM_SLOT, 0, memory);
      this.ram = new Uint8Array(memory);
      this.vcpu = this.vm.createVcpu();
      if (canKick) kicker = this.vcpu.createKicker();
    } catch (err) {
      this.vm.close();
      this.#kick.close();
      throw err;
    }
    this.#kicker = kicker;
    this.#irqfds = this.irqfd ? new IrqfdRoutes(this.vm, this.stats) : null;
    this.#ioeventfds = new IoeventfdRoutes(this.vm, this.stats);
    this.#watchFds();
  }

  /** Creates the device with this monitor as its transport, and plugs it in (see attach). */
  async createDevice(options: Omit<IvshmemDeviceOptions, 'transport'>): Promise<IvshmemDevice> {
    // This monitor waits on the device's vectors itself (the vCPU thread is busy in KVM_RUN). The
    // device calls this monitor's hooks while it is created: refuse before, not after, a device
    // that could not be attached, or its hooks would change the attached one's routes.
    if (this.#device !== undefined) throw new KvmMonitorError('a device is already attached');
    if (
      this.irqfd &&
      options.vectorWait === 'loop' &&
      (options.server !== undefined || options.handover !== undefined)
    ) {
      throw new KvmMonitorError(
        "irqfd: true needs a device created with vectorWait: 'manual' (KVM and the event loop would race for its eventfds)",
      );
    }
    const device = await IvshmemDevice.create({ vectorWait: 'manual', ...options, transport: this });
    try {
      this.attach(device);
    } catch (err) {
      device.close();
      throw err;
    }
    return device;
  }

  /** Plugs a device (created with this monitor as its transport) into the slot, as firmware would route its INTx. */
  attach(device: IvshmemDevice): void {
    if (this.#device !== undefined) throw new KvmMonitorError('a device is already attached');
    if (this.irqfd && device.connection !== undefined && device.vectorWait !== 'manual') {
      throw new KvmMonitorError(
        "irqfd: true needs a device created with vectorWait: 'manual' (KVM and the event loop would race for its eventfds)",
      );
    }
    this.#device = device;
    for (const b of device.bars) this.#barSize[b.index] = b.size;
    device.configWrite(PCI_INTERRUPT_LINE, 1, this.irq); // as a PC BIOS fills it in
    // A device handed over to us may have BARs programmed already, announced before it had a slot.
    for (const b of device.bars) this.barMapped(b.index, device.barAddress(b.index));
  }

  /**
   * The own vectors KVM delivers as irqfds right now (empty without the fast path, or while MSI-X would not deliver).
   */
  get irqfds(): IrqfdRoute[] {
    return this.#irqfds?.routes ?? [];
  }

  /** Whether a signal on kickFd or an own vector can interrupt a running guest (KVM_CAP_IMMEDIATE_EXIT). */
  get kickable(): boolean {
    return this.#kicker !== null;
  }

  // Deassigns every irqfd and ioeventfd.
  #unregisterAll(): void {
    this.#ioeventfds.clear();
    this.#irqfds?.clear();
  }

  #watchFds(): void {
    if (this.#closed) return;
    const irqfds = this.#irqfds;
    this.#kicker?.setFds([this.#kick.fd, ...this.#ownFds.filter((fd) => fd >= 0 && !(irqfds?.has(fd) ?? false))]);
  }

  // After a kick: pass each own vector's signals to the device core (the WASM path), except
  // those KVM consumes as irqfds.
  #serviceVectors(): void {
    const device = this.#device;
    if (device === undefined) return;
    const irqfds = this.#irqfds;
    this.#ownFds.forEach((fd, vector) => {
      if (fd < 0 || (irqfds?.has(fd) ?? false)) return;
      if (drainEventfd(fd) === 0) return;
      this.stats.vectorWakeups++;
      device.fireVector(vector);
    });
  }

  /**
   * The doorbell routes registered as KVM ioeventfds right now (empty without the fast path or while BAR0 does not
   * decode).
   */
  get ioeventfds(): IoeventfdRoute[] {
    return this.#ioeventfds.registered;
  }

  get device(): IvshmemDevice | undefined {
    return this.#device;
  }

  /** Copies `code` into guest RAM at `at`. */
  load(code: Uint8Array, at: number): void {
    this.ram.set(code, at);
  }

  /** Resets the vCPU to real mode at CS:IP = 0:rip. */
  start(rip: number): void {
    this.vcpu.setRealMode(rip);
  }

  // ---- VmmTransport ----

  setIrqLevel(level: 0 | 1): void {
    this.stats.irqLevelChanges++;
    if (!this.#closed) this.vm.irqLine(this.irq, level);
  }

  sendMsi(address: number, data: number): void {
    if (this.#closed) return;
    if (this.vm.signalMsi(address, data)) this.stats.msiSignalled++;
    else this.stats.msiBlocked++;
  }

  barMapped(bar: number, address: BarAddress): void {
    this.#barBase[bar] = address === null ? -1 : Number(address);
    if (this.#closed) return;
    this.#ioeventfds.moveTo(bar, address === null ? null : Number(address)); // the ioeventfds follow their BAR
    if (bar !== 2) return;
    this.#dropBar2Slot();
    if (this.#device?.released !== false) return;
    const buffer = this.#device?.sharedMemory.buffer;
    if (address === null || !(buffer instanceof ArrayBuffer)) return;
    try {
      this.vm.setMemory(BAR2_SLOT, Number(address), buffer);
      this.#bar2Slot = true;
    } catch {
      // Not page-aligned (a plain ArrayBuffer): BAR2 accesses exit and are dispatched instead.
    }
  }

  // The device's fast-path hooks: it says which routes exist and which of our vectors MSI-X
  // would deliver; the monitor only carries that into KVM.

  addIoEventFd(route: IoEventFd): void {
    if (this.ioeventfd && !this.#closed) this.#ioeventfds.add(route);
  }

  removeIoEventFd(route: IoEventFd): void {
    if (!this.#closed) this.#ioeventfds.remove(route);
  }

  vectorFd(vector: number, fd: number): void {
    this.#ownFds[vector] = fd;
    this.#watchFds();
  }

  vectorDeliverable(vector: number, fd: number, message: MsiMessage | null): void {
    if (this.#irqfds === null || this.#closed) return;
    this.#irqfds.set(vector, fd, message);
    this.#watchFds();
  }

  #dropBar2Slot(): void {
    if (!this.#bar2Slot || this.#closed) return;
    this.vm.setMemory(BAR2_SLOT, 0, null);
    this.#bar2Slot = false;
  }

  /** Whether BAR2 is mapped into the guest as memory (zero copy) rather than trapped. */
  get bar2Mapped(): boolean {
    return this.#bar2Slot;
  }

  // ---- the vCPU loop ----

  /**
   * Runs the guest like run(), but gives the thread back to the event loop whenever the loop has
   * I/O ready or a timer due (a server's join message, a timer, a worker message), and re-enters
   * the guest right after. Resolves with what run() would return; needs KVM_CAP_IMMEDIATE_EXIT.
   */
  async runAsync(maxExits = Number.MAX_SAFE_INTEGER): Promise<MonitorRunResult> {
    const kicker = this.#kicker;
    if (kicker === null)
      throw new KvmMonitorError('runAsync needs KVM_CAP_IMMEDIATE_EXIT (nothing could interrupt the guest)');
    let exits = 0;
    for (;;) {
      this.#yieldToLoop = true;
      kicker.setLoop(true);
      let r: MonitorRunResult;
      try {
        r = this.run(maxExits - exits);
      } finally {
        this.#yieldToLoop = false;
        if (!this.#closed) kicker.setLoop(false);
      }
      exits += r.exits;
      if (!this.#yielded) return { ...r, exits };
      this.#yielded = false;
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (this.#closed) throw new KvmMonitorError('the monitor was closed while its guest ran');
    }
  }

  #yieldToLoop = false;
  #yielded = false;

  /** Runs the guest until it writes the done port; throws on an exit it cannot handle or after maxExits. */
  run(maxExits = 100_000): MonitorRunResult {
    if (this.#device?.released === true) {
      this.#dropBar2Slot(); // its memory may be unmapped: the guest must not reach it
      throw new KvmMonitorError('the device was closed or handed over: this guest cannot run any more');
    }
    let exits = 0;
    const kicker = this.#kicker;
    for (;;) {
      kicker?.arm();
      const exit = this.vcpu.run();
      exits++;
      this.stats.exits++;
      if (exit.reason === KVM_EXIT.IO) {
        const io = exit.io!;
        if (io.isOut && io.port === this.donePort) return { done: io.data, exits };
        this.#portIo(io);
      } else if (exit.reason === KVM_EXIT.MMIO) {
        this.#mmio(exit.mmio!);
      } else if (exit.reason === KVM_EXIT.INTR || exit.reason === KVM_RUN_INTERRUPTED) {
        // Kicked (or another signal): serve our vectors; a stop request ends the run.
        this.stats.kicks++;
        this.#serviceVectors();
        if (this.#kick.drain() > 0) return { done: null, exits };
        if (this.#yieldToLoop) {
          this.#yielded = true; // runAsync: let the loop run, then come back
          return { done: null, exits };
        }
      } else {
        throw new KvmMonitorError(`unexpected KVM exit ${exit.reason}`, { ...exit });
      }
      if (exits >= maxExits)
        throw new KvmMonitorError(`the guest did not reach its done port within ${maxExits} exits`);
    }
  }

  #portIo(io: KvmIoExit): void {
    const { port, size, isOut } = io;
    if (port === PCI_CONFIG_ADDRESS && size === 4) {
      if (isOut) this.#configAddress = io.data >>> 0;
      else this.vcpu.completeIoIn(io, this.#configAddress);
      return;
    }
    if (port >= PCI_CONFIG_DATA && port + size <= PCI_CONFIG_DATA + 4) {
      const reg = (this.#configAddress & 0xfc) + (port - PCI_CONFIG_DATA);
      const target = this.#configTarget();
      if (isOut) {
        this.stats.configWrites++;
        if (target) {
          this.#device!.configWrite(reg, size, io.data);
        }
      } else {
        this.stats.configReads++;
        this.vcpu.completeIoIn(io, target ? this.#device!.configRead(reg, size) : ones(size));
      }
      return;
    }
    this.stats.unassignedIo++;
    if (!isOut) this.vcpu.completeIoIn(io, ones(size));
  }

  // Config cycles reach our device only when enabled (bit 31) for bus 0, our slot, function 0.
  #configTarget(): boolean {
    const a = this.#configAddress;
    if ((a & 0x8000_0000) === 0 || this.#device === undefined) return false;
    const bus = (a >>> 16) & 0xff;
    const slot = (a >>> 11) & 0x1f;
    const fn = (a >>> 8) & 0x7;
    return bus === 0 && slot === this.slot && fn === 0;
  }

  #mmio(m: KvmMmioExit): void {
    const device = this.#device;
    if (device !== undefined) {
      for (let bar = 0; bar < 3; bar++) {
        const base = this.#barBase[bar];
        if (base < 0) continue;
        const offset = m.address - base;
        if (offset < 0 || offset + m.size > this.#barSize[bar]) continue;
        this.stats.mmio[bar as 0 | 1 | 2]++;
        if (bar === 0 && m.isWrite && offset === REG_DOORBELL) this.stats.doorbellExits++;
        if (m.isWrite) device.mmioWrite(bar, offset, m.size, m.data);
        else this.vcpu.completeMmioRead(device.mmioRead(bar, offset, m.size));
        return;
      }
    }
    this.stats.unassignedMmio++;
    if (!m.isWrite) this.vcpu.completeMmioRead(m.size === 8 ? 0xffff_ffff_ffff_ffffn : ones(m.size));
  }

  /** Closes the VM (vCPU, RAM, slots). The device stays the caller's. */
  close(): void {
    if (this.#closed) return;
    this.#unregisterAll();
    this.#kicker?.close();
    this.#closed = true;
    this.vm.close();
    this.#kick.close();
  }
}

function ones(size: number): number {
  return size >= 4 ? 0xffff_ffff : 2 ** (8 * size) - 1;
}
