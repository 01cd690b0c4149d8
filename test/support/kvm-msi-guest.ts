// The MSI-X test guest for KvmMonitor: a real-mode program that does what firmware and an MSI-X
// driver would, then plays one side of a doorbell ping-pong with another peer.
//   firmware: loads a flat data segment into GS through a GDT and a round trip through protected
//     mode ("big real mode"), so the guest can reach its LAPIC at 0xFEE00000; enables the LAPIC
//     (spurious-vector register), as PC firmware does; probes bus 0 for 1af4:1110; places BAR0,
//     BAR1 (the MSI-X table) and BAR2; turns on memory decoding and bus mastering;
//   driver: points MSI-X table entry 0 at the LAPIC (fixed delivery, vector MSI_VECTOR),
//     unmasks it, enables MSI-X, installs the ISR (counts, then EOI to the LAPIC), reads
//     IVPosition; OUT done, 1.
//   phase 2 (OUT done, 2 at the end; running it again starts another phase 2): `rounds` times — the initiator rings
// `doorbell` and waits
//     for an interrupt; the responder waits for an interrupt and rings `doorbell`. Waiting is
//     `cli; compare; sti; hlt`, so no wake-up is lost.
import { Asm16 } from './asm16.js';
import { CODE_GPA, DONE_PORT, IVSHMEM_ID, NOT_FOUND, STACK_TOP } from './kvm-guest.js';

export { CODE_GPA, DONE_PORT, NOT_FOUND };
export const MSI_BAR0_GPA = 0xe0000;
export const MSI_BAR1_GPA = 0xe1000;
export const MSI_BAR2_GPA = 0x80000;
export const MSI_VECTOR = 0x40;
export const LAPIC_GPA = 0xfee0_0000;
const LAPIC_EOI = LAPIC_GPA + 0xb0;
const LAPIC_SVR = LAPIC_GPA + 0xf0;

export type PingPongRole = 'initiator' | 'responder';

/**
 * Data dwords (program.address(label)): devaddr, ids, ivposition, msixctl, doorbell, rounds (set by the host), irqs,
 * seen.
 */
export function buildMsiGuest(role: PingPongRole): Asm16 {
  const a = new Asm16(CODE_GPA);
  const cfg = (reg: number) => a.movEaxEbx().orAl(reg).movDx(0xcf8).outDxEax().movDx(0xcfc);
  const cfgWrite = (reg: number, v: number) => cfg(reg).movEax(v).outDxEax();
  const flatStore = (address: number, value: number) => a.movEdi(address).movEax(value).gs().storeEdi32();

  a.label('start').cli();
  a.xorAxAx().movSegAx('ds').movSegAx('ss').movSp(STACK_TOP);

  // Big real mode: GS keeps a 4 GiB limit after PE is cleared again.
  a.lgdt('gdtr');
  a.movEaxCr0().orAl(1).movCr0Eax();
  a.movBx(0x08).movSegBx('gs');
  a.andAl(0xfe).movCr0Eax();
  flatStore(LAPIC_SVR, 0x1ff); // APIC software-enabled, spurious vector 0xff

  a.movEbx(0x8000_0000);
  a.label('probe');
  cfg(0x00).inEaxDx();
  a.cmpEax(IVSHMEM_ID).jcc('je', 'found');
  a.addEbx(0x800).cmpEbx(0x8001_0000).jcc('jb', 'probe');
  a.outb(DONE_PORT, NOT_FOUND);

  a.label('found').storeEbx('devaddr');
  cfg(0x00).inEaxDx().store32('ids');
  cfgWrite(0x10, MSI_BAR0_GPA);
  cfgWrite(0x14, MSI_BAR1_GPA);
  cfgWrite(0x18, MSI_BAR2_GPA);
  cfgWrite(0x1c, 0);
  cfgWrite(0x04, 0x0006); // memory decoding + bus master (MSI writes are DMA)

  flatStore(MSI_BAR1_GPA + 0, LAPIC_GPA); // entry 0: message address (destination APIC 0)
  flatStore(MSI_BAR1_GPA + 4, 0);
  flatStore(MSI_BAR1_GPA + 8, MSI_VECTOR); // message data: fixed delivery, edge
  flatStore(MSI_BAR1_GPA + 12, 0); // vector control: unmasked
  a.store16Imm(MSI_VECTOR * 4, 'isr').store16Imm(MSI_VECTOR * 4 + 2, 0);
  cfg(0x40).inEaxDx().orEax(0x8000_0000).outDxEax(); // MSI-X Enable (Message Control bit 15)
  cfg(0x40).inEaxDx().store32('msixctl');

  a.movAx(MSI_BAR0_GPA >> 4).movSegAx('es');
  a.es().load32(0x08).store32('ivposition');
  a.outb(DONE_PORT, 1);

  a.label('round');
  if (role === 'initiator') a.load32('doorbell').es().store32(0x0c);
  a.label('wait').cli();
  a.load32('irqs').cmpEaxMem('seen').jcc('jne', 'woke');
  a.sti().hlt().jmp('wait');
  a.label('woke').sti().incDword('seen');
  if (role === 'responder') a.load32('doorbell').es().store32(0x0c);
  a.decDword('rounds').jcc('jne', 'round');
  a.outb(DONE_PORT, 2);
  a.jmp('round'); // run again: the host has set `rounds` anew

  a.label('isr').pushEax().pushEdi();
  a.incDword('irqs');
  a.movEdi(LAPIC_EOI).xorEaxEax().gs().storeEdi32();
  a.popEdi().popEax().iret();

  a.label('gdt').imm32(0).imm32(0).imm32(0x0000_ffff).imm32(0x00cf_9200); // null; flat 4 GiB data
  a.label('gdtr').imm16(15).emit(0, 0, 0, 0); // base patched below: labels are 16-bit fixups
  a.dd('devaddr').dd('ids').dd('ivposition').dd('msixctl').dd('doorbell').dd('rounds').dd('irqs').dd('seen');
  return a;
}

/** Assembles `program` with its GDT base filled in. */
export function assembleMsiGuest(program: Asm16): Uint8Array {
  const bytes = program.assemble();
  const at = program.address('gdtr') - program.origin + 2;
  new DataView(bytes.buffer, bytes.byteOffset).setUint32(at, program.address('gdt'), true);
  return bytes;
}

/**
 * Loads the guest into a monitor, sets its doorbell and round count, resets the vCPU; returns a reader of its data
 * dwords.
 */
export function loadMsiGuest(
  monitor: { ram: Uint8Array; load(code: Uint8Array, at: number): void; start(rip: number): void },
  program: Asm16,
  doorbell: number,
  rounds: number,
): (label: string) => number {
  monitor.load(assembleMsiGuest(program), CODE_GPA);
  const data = new DataView(monitor.ram.buffer, monitor.ram.byteOffset, monitor.ram.byteLength);
  data.setUint32(program.address('doorbell'), doorbell >>> 0, true);
  data.setUint32(program.address('rounds'), rounds >>> 0, true);
  monitor.start(CODE_GPA);
  return (label: string) => data.getUint32(program.address(label), true);
}
