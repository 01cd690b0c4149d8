// The minimal KVM bindings with a real vCPU: a hand-assembled real-mode guest reads IVPosition
// from an IvshmemDevice's BAR0 (an MMIO window outside guest RAM), stores it in RAM, writes
// IntrMask and rings a doorbell, then ends with an OUT. The vCPU runs on the test's thread: every
// MMIO access is one KVM_RUN return, dispatched to the device, reads completed via kvm_run.mmio.data.
// Skipped (with a warning) where /dev/kvm cannot be opened.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { IvshmemDevice } from '../../src/device/device.js';
import { Kvm, KVM_CAP, KVM_EXIT, KVM_RUN, KvmVcpu, KvmVm } from '../../src/monitors/kvm/kvm.js';
import { EventFd } from '../../src/os/eventfd.js';
import { native } from '../../src/os/binding.js';
import { expectNoFdLeak } from '../support/fd-leaks.js';
import { Asm16 as Asm } from '../support/asm16.js';

let kvm: Kvm | undefined;
try {
  kvm = Kvm.open();
} catch (err) {
  console.warn(`monitors/kvm.test.ts: skipped, /dev/kvm cannot be opened (${(err as { code?: string }).code ?? err})`);
}

const RAM_SIZE = 0x10000;
const CODE_GPA = 0x1000;
const WINDOW_GPA = 0x10000; // BAR0 as the guest sees it: outside RAM, so every access exits
const WINDOW_SIZE = 0x100;
const END_PORT = 0xf4;
const INTR_MASK = 0xa5a5_5a5a;
const DOORBELL = (7 << 16) | 0;

// ES = WINDOW_GPA >> 4 reaches BAR0; DS = 0 (the reset value) reaches guest RAM.
function guest(): Asm {
  const a = new Asm(CODE_GPA);
  a.label('start');
  a.movAx(WINDOW_GPA >> 4).movSegAx('es');
  a.es().load32(0x08); // mov eax, [es:8]       ; IVPosition
  a.store32('result'); // mov [result], eax
  a.movEax(INTR_MASK);
  a.es().store32(0x00); // mov [es:0], eax       ; IntrMask
  a.movEax(DOORBELL);
  a.es().store32(0x0c); // mov [es:12], eax      ; Doorbell
  a.outb(END_PORT, 0x42); // the end marker
  a.hlt(); // never reached by the loop
  a.dd('result', 0xffff_ffff);
  return a;
}

interface Run {
  exits: number;
  mmio: { offset: number; isWrite: boolean; size: number }[];
}

/** Runs the vCPU until the end marker, dispatching the window's MMIO exits to BAR0. */
function runToEnd(vcpu: KvmVcpu, device: IvshmemDevice): Run {
  const run: Run = { exits: 0, mmio: [] };
  for (;;) {
    const exit = vcpu.run();
    run.exits++;
    if (run.exits > 100) throw new Error('the guest did not reach its end marker');
    if (
      exit.reason === KVM_EXIT.MMIO &&
      exit.mmio!.address >= WINDOW_GPA &&
      exit.mmio!.address < WINDOW_GPA + WINDOW_SIZE
    ) {
      const { address, size, isWrite, data } = exit.mmio!;
      const offset = address - WINDOW_GPA;
      run.mmio.push({ offset, isWrite, size });
      if (isWrite) device.mmioWrite(0, offset, size, data);
      else vcpu.completeMmioRead(device.mmioRead(0, offset, size));
      continue;
    }
    if (exit.reason === KVM_EXIT.IO && exit.io!.port === END_PORT && exit.io!.isOut) {
      expect(exit.io!.data).toBe(0x42);
      return run;
    }
    throw new Error(`unexpected exit ${JSON.stringify(exit, (_, v) => (typeof v === 'bigint' ? String(v) : v))}`);
  }
}

describe.skipIf(kvm === undefined)("KVM: a real-mode guest drives the device's BAR0", () => {
  expectNoFdLeak();
  let vm: KvmVm | undefined;
  let device: IvshmemDevice | undefined;
  let rings: number[];

  beforeAll(() => {
    expect(kvm!.checkExtension(KVM_CAP.USER_MEMORY)).toBeGreaterThan(0);
  });

  afterEach(() => {
    device?.close();
    vm?.close();
    device = undefined;
    vm = undefined;
  });

  async function setUp(): Promise<{ vm: KvmVm; vcpu: KvmVcpu; ram: Uint8Array; device: IvshmemDevice; program: Asm }> {
    rings = [];
    device = await IvshmemDevice.create({
      mode: 'doorbell',
      vectors: 1,
      id: 5,
      memory: new ArrayBuffer(4096),
      transport: { setIrqLevel: () => {}, sendMsi: () => {} },
      doorbell: { ring: (handle: number) => rings.push(handle) },
    });
    device.connectPeerVector(7, 70);
    vm = kvm!.createVm();
    const memory = vm.allocMemory(RAM_SIZE);
    vm.setMemory(0, 0, memory);
    const ram = new Uint8Array(memory);
    const program = guest();
    ram.set(program.assemble(), CODE_GPA);
    const vcpu = vm.createVcpu();
    vcpu.setRealMode(CODE_GPA);
    return { vm, vcpu, ram, device, program };
  }

  it('reads IVPosition into RAM, writes IntrMask and rings peer 7 through MMIO exits', async () => {
    const { vcpu, ram, device, program } = await setUp();
    const run = runToEnd(vcpu, device);
    const result = program.address('result');
    expect(new DataView(ram.buffer).getUint32(result, true)).toBe(5);
    expect(device.mmioRead(0, 0x00, 4)).toBe(INTR_MASK >>> 0);
    expect(rings).toEqual([70]);
    expect(device.counters().doorbellsSent).toBe(1);
    expect(run.mmio).toEqual([
      { offset: 0x08, isWrite: false, size: 4 },
      { offset: 0x00, isWrite: true, size: 4 },
      { offset: 0x0c, isWrite: true, size: 4 },
    ]);
    expect(run.exits).toBe(4); // three MMIO accesses and the end marker
  });

  it('an ioeventfd on the doorbell (datamatch 7 << 16) is signalled without an MMIO exit', async () => {
    const { vm, vcpu, device } = await setUp();
    const doorbell = EventFd.create();
    try {
      vm.ioeventfd(WINDOW_GPA + 0x0c, 4, DOORBELL, doorbell.fd);
      const run = runToEnd(vcpu, device);
      expect(doorbell.drain()).toBe(1);
      expect(rings).toEqual([]); // the device never saw the doorbell write
      expect(run.mmio.map((m) => m.offset)).toEqual([0x08, 0x00]);
      expect(run.exits).toBe(3);
      vm.removeIoeventfd(WINDOW_GPA + 0x0c, 4, DOORBELL, doorbell.fd);
    } finally {
      doorbell.close();
    }
  });

  it('creates an in-kernel irqchip, drives an irq line and attaches an irqfd', () => {
    vm = kvm!.createVm();
    const e = EventFd.create();
    try {
      vm.createIrqchip();
      vm.irqLine(5, 1);
      vm.irqLine(5, 0);
      vm.irqfd(5, e.fd);
      vm.removeIrqfd(5, e.fd);
    } finally {
      e.close();
    }
  });

  it("hands out registered fds, a kvm_run of the kernel's size, and Node-style errors", () => {
    vm = kvm!.createVm();
    const vcpu = vm.createVcpu();
    expect(native().isOwnedFd(vm.fd)).toBe(true);
    expect(native().isOwnedFd(vcpu.fd)).toBe(true);
    expect(vcpu.runBuffer.byteLength).toBeGreaterThanOrEqual(4096);
    expect(vcpu.runView.getUint32(KVM_RUN.EXIT_REASON, true)).toBe(0);
    const fd = vcpu.fd;
    vm.close();
    expect(vcpu.closed).toBe(true);
    expect(native().isOwnedFd(fd)).toBe(false);
    expect(vcpu.runBuffer.byteLength).toBe(0); // unmapped: detached, not dangling
    expect(() => native().kvmCreateVcpu(fd)).toThrow(expect.objectContaining({ code: 'EBADF', syscall: 'ioctl' }));
    const unaligned = new ArrayBuffer(100);
    const other = kvm!.createVm();
    try {
      expect(() => other.setMemory(0, 0, unaligned)).toThrow(
        expect.objectContaining({ code: 'EINVAL', syscall: 'ioctl' }),
      );
    } finally {
      other.close();
    }
  });
});

describe.skipIf(kvm === undefined)('KVM: the vCPU kicker', () => {
  expectNoFdLeak();

  it('a watched eventfd kicks a running KVM_RUN out (EINTR), once per arm', () => {
    const vm = kvm!.createVm();
    const e = EventFd.create();
    try {
      const vcpu = vm.createVcpu();
      const code = new Asm(CODE_GPA).label('spin').jmp('spin').assemble(); // never exits by itself
      const ram = vm.allocMemory(RAM_SIZE);
      new Uint8Array(ram).set(code, CODE_GPA);
      vm.setMemory(0, 0, ram);
      vcpu.setRealMode(CODE_GPA);
      const kicker = vcpu.createKicker();
      kicker.setFds([e.fd]);
      e.signal(); // already readable when KVM_RUN starts: immediate_exit makes it return at once
      expect(vcpu.run().reason).toBe(-1);
      expect(kicker.kicks).toBe(1);
      expect(e.drain()).toBe(1);
      kicker.close();
      kicker.close();
      expect(kicker.kicks, 'kept after close').toBe(1);
    } finally {
      vm.close();
      e.close();
    }
  });

  it('survives the vCPU closing first: a later signal touches only its own mapping of kvm_run', async () => {
    const vm = kvm!.createVm();
    const e = EventFd.create();
    try {
      const vcpu = vm.createVcpu();
      const kicker = vcpu.createKicker();
      kicker.setFds([e.fd]);
      kicker.arm();
      vcpu.close(); // unmaps JavaScript's kvm_run and closes the vCPU fd
      e.signal(); // the helper thread kicks: writes immediate_exit, signals this thread
      await new Promise((r) => setTimeout(r, 50));
      expect(kicker.kicks).toBe(1);
      kicker.close();
    } finally {
      vm.close();
      e.close();
    }
  });
});

describe.skipIf(kvm === undefined)('KVM: closing', () => {
  it('closes /dev/kvm last', () => {
    kvm!.close();
    expect(kvm!.closed).toBe(true);
  });
});
