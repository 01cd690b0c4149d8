// The real-mode test guest for KvmMonitor (src/monitors/kvm/monitor.ts), shared by monitors/kvm-monitor.test.ts,
// monitors/kvm-peers.test.ts and, through the bundle of test/support/kvm-bundle.ts, the child process of
// test/support/kvm-peer-child.mjs. It does what firmware and a driver would:
//   phase 1 (ends with OUT done, 1): probe bus 0 through 0xcf8/0xcfc for 1af4:1110, size and
//     program BAR0 and BAR2, enable memory decoding, read IVPosition, optionally store a dword
//     into BAR2, unmask the interrupt source, optionally ring the dword the host left in
//     `doorbell`, and set up the IVT and the PIC for INTx on `IRQ`;
//   phase 2 (ends with OUT done, 2): wait for INTx without losing a wake-up, its ISR reading
//     IntrStatus (which lowers the line); then read a dword of BAR2 into `received`.
// The device is not found: OUT done, NOT_FOUND.
import { Asm16 } from './asm16.js';

export const DONE_PORT = 0xf4; // MONITOR_DONE_PORT
export const CODE_GPA = 0x1000;
export const STACK_TOP = 0x7000;
export const BAR0_GPA = 0xe0000; // ES = 0xe000: below 1 MiB, above RAM (512 KiB)
export const BAR2_GPA = 0x80000; // FS = 0x8000: right after RAM
export const SHM_SIZE = 0x10000; // 64 KiB, so BAR2 fits 0x80000..0x90000
export const IRQ = 5;
export const PIC_BASE = 0x20; // IRQ n -> vector 0x20 + n
export const MAGIC = 0xc0ffee42;
export const MAGIC_OFFSET = 0x100;
export const IVSHMEM_ID = 0x1110_1af4; // device << 16 | vendor
export const NOT_FOUND = 0xee;

export interface GuestOptions {
  /** The dword phase 1 stores into BAR2 at `writeAt`; default MAGIC. */
  value?: number;
  /** Where in BAR2 phase 1 stores `value`; null: no store. Default MAGIC_OFFSET. */
  writeAt?: number | null;
  /** Whether phase 1 writes the `doorbell` dword to the Doorbell register; default true. */
  ring?: boolean;
  /** Where in BAR2 phase 2 reads `received` from; default MAGIC_OFFSET. */
  readAt?: number;
}

/**
 * The guest, to load at CODE_GPA and start there. Its data dwords (program.address(label)):
 * devaddr, ids, bar0size, bar2size, intline, ivposition, doorbell (filled by the host before
 * phase 1), intrstatus, irqs, received.
 */
export function buildGuest(options: GuestOptions = {}): Asm16 {
  const { value = MAGIC, writeAt = MAGIC_OFFSET, ring = true, readAt = MAGIC_OFFSET } = options;
  const a = new Asm16(CODE_GPA);
  // EBX = CONFIG_ADDRESS of the found device; cfg(reg) leaves DX on CONFIG_DATA.
  const cfg = (reg: number) => a.movEaxEbx().orAl(reg).movDx(0xcf8).outDxEax().movDx(0xcfc);
  const cfgRead = (reg: number) => cfg(reg).inEaxDx();
  const cfgWrite = (reg: number, v: number) => cfg(reg).movEax(v).outDxEax();
  // Writes all-ones to a BAR and stores its size (~(readback & ~0xf) + 1) at `into`.
  const sizeBar = (reg: number, into: string) => {
    cfgWrite(reg, 0xffff_ffff);
    cfgRead(reg).andEax(0xffff_fff0).notEax().incEax().store32(into);
  };

  a.label('start').cli();
  a.xorAxAx().movSegAx('ds').movSegAx('ss').movSp(STACK_TOP);

  // Firmware: probe bus 0, slots 0..31, function 0.
  a.movEbx(0x8000_0000);
  a.label('probe');
  cfgRead(0x00);
  a.cmpEax(IVSHMEM_ID).jcc('je', 'found');
  a.addEbx(0x800).cmpEbx(0x8001_0000).jcc('jb', 'probe');
  a.outb(DONE_PORT, NOT_FOUND);

  a.label('found').storeEbx('devaddr');
  cfgRead(0x00).store32('ids');
  sizeBar(0x10, 'bar0size');
  sizeBar(0x18, 'bar2size');
  cfgWrite(0x10, BAR0_GPA);
  cfgWrite(0x18, BAR2_GPA);
  cfgWrite(0x1c, 0); // BAR2 is 64-bit: its high half
  cfgWrite(0x04, 0x0002); // command: memory decoding
  cfgRead(0x3c).store32('intline');

  // Driver: registers through ES, shared memory through FS.
  a.movAx(BAR0_GPA >> 4).movSegAx('es');
  a.movAx(BAR2_GPA >> 4).movSegAx('fs');
  a.es().load32(0x08).store32('ivposition');
  if (writeAt !== null)
    a.movEax(value >>> 0)
      .fs()
      .store32(writeAt);
  a.movEax(1).es().store32(0x00); // IntrMask: the (only) interrupt source
  if (ring) a.load32('doorbell').es().store32(0x0c); // ring the peer

  // Interrupt setup: IVT entry, PIC (IRQ level-triggered in ELCR, vectors at PIC_BASE, only IRQ unmasked).
  a.store16Imm((PIC_BASE + IRQ) * 4, 'isr').store16Imm((PIC_BASE + IRQ) * 4 + 2, 0);
  a.outb(0x4d0, 1 << IRQ); // ELCR1: PCI INTx is level-triggered
  a.outb(0x20, 0x11).outb(0x21, PIC_BASE).outb(0x21, 0x04).outb(0x21, 0x01); // ICW1..4
  a.outb(0x21, ~(1 << IRQ) & 0xff); // OCW1: mask all but IRQ
  a.outb(DONE_PORT, 1);

  // Phase 2: wait for the interrupt without losing a wake-up (STI's shadow covers HLT).
  a.label('wait').cli();
  a.cmpByte('irqs', 0).jcc('jne', 'woke');
  a.sti().hlt().jmp('wait');
  a.label('woke');
  a.fs().load32(readAt).store32('received');
  a.outb(DONE_PORT, 2);

  // ISR: read IntrStatus (clears it: the device lowers INTx), count, EOI.
  a.label('isr').pushEax();
  a.es().load32(0x04).store32('intrstatus');
  a.incByte('irqs');
  a.outb(0x20, 0x20);
  a.popEax().iret();

  a.dd('devaddr').dd('ids').dd('bar0size').dd('bar2size').dd('intline').dd('ivposition');
  a.dd('doorbell').dd('intrstatus').dd('irqs').dd('received');
  return a;
}

/** Loads `program` into a monitor's RAM, fills its doorbell dword, and resets the vCPU to it. */
export function loadGuest(
  monitor: { ram: Uint8Array; load(code: Uint8Array, at: number): void; start(rip: number): void },
  program: Asm16,
  doorbell = 0,
): (label: string) => number {
  monitor.load(program.assemble(), CODE_GPA);
  const data = new DataView(monitor.ram.buffer, monitor.ram.byteOffset, monitor.ram.byteLength);
  data.setUint32(program.address('doorbell'), doorbell >>> 0, true);
  monitor.start(CODE_GPA);
  return (label: string) => data.getUint32(program.address(label), true);
}

/**
 * The start of a guest that already knows where the device is: real mode with DS = SS = 0 and a
 * stack, BAR0 of 00:<slot>.0 placed at BAR0_GPA and memory decoding on (EBX keeps the device's
 * CONFIG_ADDRESS). The caller appends the rest.
 */
export function bar0Prologue(slot: number): Asm16 {
  const a = new Asm16(CODE_GPA);
  const cfgWrite = (reg: number, value: number) =>
    a.movEaxEbx().orAl(reg).movDx(0xcf8).outDxEax().movDx(0xcfc).movEax(value).outDxEax();
  a.label('start').cli();
  a.xorAxAx().movSegAx('ds').movSegAx('ss').movSp(STACK_TOP);
  a.movEbx((0x8000_0000 | (slot << 11)) >>> 0);
  cfgWrite(0x10, BAR0_GPA);
  cfgWrite(0x04, 0x0002); // command: memory decoding
  return a;
}
