// The reference monitor (src/kvm/monitor.ts) with a real vCPU and a real-mode guest that does
// what firmware and a driver would: it probes bus 0 through 0xcf8/0xcfc for 1af4:1110, sizes
// and programs BAR0 and BAR2, enables memory decoding, reads IVPosition, writes into BAR2 (a KVM
// memory slot over the server's shared memory: no exit) and rings a host IvshmemClient through
// the in-process IvshmemServer. Then the client rings the guest: INTx through the in-kernel PIC
// wakes the guest from `cli; test; sti; hlt`, and its ISR reads IntrStatus, which lowers the line.
// Skipped (with a warning) where /dev/kvm cannot be opened.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { IvshmemClient } from '../src/client/ivshmem-client.js';
import type { IvshmemDevice } from '../src/device.js';
import { Kvm } from '../src/kvm/kvm.js';
import { KvmMonitor, MONITOR_DONE_PORT } from '../src/kvm/monitor.js';
import { IvshmemServer } from '../src/server/ivshmem-server.js';
import { Asm16 } from './support/asm16.js';
import { expectNoFdLeak } from './support/fd-leaks.js';

let kvm: Kvm | undefined;
try {
  kvm = Kvm.open();
} catch (err) {
  console.warn(`kvm-monitor.test.ts: skipped, /dev/kvm cannot be opened (${(err as { code?: string }).code ?? err})`);
}

const CODE_GPA = 0x1000;
const STACK_TOP = 0x7000;
const BAR0_GPA = 0xe0000; // ES = 0xe000: below 1 MiB, above RAM (512 KiB)
const BAR2_GPA = 0x80000; // FS = 0x8000: right after RAM
const SHM_SIZE = 0x10000; // 64 KiB, so BAR2 fits 0x80000..0x90000
const IRQ = 5;
const PIC_BASE = 0x20; // IRQ n -> vector 0x20 + n
const MAGIC = 0xc0ffee42;
const MAGIC_OFFSET = 0x100;
const IVSHMEM_ID = 0x1110_1af4; // device << 16 | vendor
const NOT_FOUND = 0xee;

/**
 * The guest. Phase 1 ends with OUT done, 1 (after the doorbell and interrupt setup); phase 2
 * waits for INTx and ends with OUT done, 2. The host fills `doorbell` before the run.
 */
function guest(): Asm16 {
  const a = new Asm16(CODE_GPA);
  // EBX = CONFIG_ADDRESS of the found device; cfg(reg) leaves DX on CONFIG_DATA.
  const cfg = (reg: number) => a.movEaxEbx().orAl(reg).movDx(0xcf8).outDxEax().movDx(0xcfc);
  const cfgRead = (reg: number) => cfg(reg).inEaxDx();
  const cfgWrite = (reg: number, value: number) => cfg(reg).movEax(value).outDxEax();
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
  a.outb(MONITOR_DONE_PORT, NOT_FOUND);

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
  a.movEax(MAGIC).fs().store32(MAGIC_OFFSET);
  a.movEax(1).es().store32(0x00); // IntrMask: the (only) interrupt source
  a.load32('doorbell').es().store32(0x0c); // ring the peer

  // Interrupt setup: IVT entry, PIC (IRQ level-triggered in ELCR, vectors at PIC_BASE, only IRQ unmasked).
  a.store16Imm((PIC_BASE + IRQ) * 4, 'isr').store16Imm((PIC_BASE + IRQ) * 4 + 2, 0);
  a.outb(0x4d0, 1 << IRQ); // ELCR1: PCI INTx is level-triggered
  a.outb(0x20, 0x11).outb(0x21, PIC_BASE).outb(0x21, 0x04).outb(0x21, 0x01); // ICW1..4
  a.outb(0x21, ~(1 << IRQ) & 0xff); // OCW1: mask all but IRQ
  a.outb(MONITOR_DONE_PORT, 1);

  // Phase 2: wait for the interrupt without losing a wake-up (STI's shadow covers HLT).
  a.label('wait').cli();
  a.cmpByte('irqs', 0).jcc('jne', 'woke');
  a.sti().hlt().jmp('wait');
  a.label('woke').outb(MONITOR_DONE_PORT, 2);

  // ISR: read IntrStatus (clears it: the device lowers INTx), count, EOI.
  a.label('isr').pushEax();
  a.es().load32(0x04).store32('intrstatus');
  a.incByte('irqs');
  a.outb(0x20, 0x20);
  a.popEax().iret();

  a.dd('devaddr').dd('ids').dd('bar0size').dd('bar2size').dd('intline').dd('ivposition');
  a.dd('doorbell').dd('intrstatus').dd('irqs');
  return a;
}

const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms));
async function until(check: () => boolean, what: string, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`${what}: not reached in time`);
    await tick();
  }
}

describe.skipIf(kvm === undefined)('KvmMonitor: a real-mode guest finds, programs and uses an ivshmem device on our server', () => {
  expectNoFdLeak();
  let dir: string;
  let n = 0;
  const cleanups: (() => void)[] = [];

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'ivshmem-kvm-monitor-'));
  });
  afterEach(() => {
    for (const c of cleanups.splice(0).reverse()) c();
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
    kvm?.close();
  });

  async function setUp(mode: 'intx' | 'doorbell') {
    const server = IvshmemServer.start({
      socketPath: join(dir, `s${n++}.sock`), memory: { shm: `ivshmem-kvm-monitor-${process.pid}-${n++}` }, size: SHM_SIZE, vectors: 1,
    });
    cleanups.push(() => server.close());
    const client = await IvshmemClient.connect(server.socketPath, { vectors: 1 });
    cleanups.push(() => client.close());
    const interrupts: number[] = [];
    client.on('interrupt', (vector) => interrupts.push(vector));
    const joins: number[] = [];
    server.on('join', (id) => joins.push(id));
    const monitor = new KvmMonitor(kvm!, { irq: IRQ });
    cleanups.push(() => monitor.close());
    const device: IvshmemDevice = await monitor.createDevice({ mode, vectors: 1, server: server.socketPath });
    cleanups.push(() => device.close());
    await until(() => client.peers.has(device.id), 'the client hears of the device');
    const program = guest();
    monitor.load(program.assemble(), CODE_GPA);
    const data = new DataView(monitor.ram.buffer);
    const word = (label: string) => data.getUint32(program.address(label), true);
    data.setUint32(program.address('doorbell'), (client.id << 16) | 0, true);
    monitor.start(CODE_GPA);
    return { server, client, interrupts, joins, monitor, device, program, word };
  }

  /** Phase 1 of the guest, and what the host sees of it. */
  async function phase1(env: Awaited<ReturnType<typeof setUp>>): Promise<void> {
    const { server, client, interrupts, joins, monitor, device, word } = env;
    expect(joins).toEqual([device.id]);
    expect(device.id).not.toBe(client.id);

    expect(monitor.run().done, 'the guest found 1af4:1110 and finished phase 1').toBe(1);
    expect(word('devaddr')).toBe((0x8000_0000 | (monitor.slot << 11)) >>> 0);
    expect(word('ids')).toBe(IVSHMEM_ID);
    expect(word('bar0size')).toBe(256);
    expect(word('bar2size')).toBe(server.memory.size);
    expect(word('intline') & 0xff, 'Interrupt Line, as the monitor set it').toBe(IRQ);
    expect(device.barAddress(0)).toBe(BigInt(BAR0_GPA));
    expect(device.barAddress(2)).toBe(BigInt(BAR2_GPA));
    expect(monitor.bar2Mapped).toBe(true);
    expect(word('ivposition'), 'IVPosition is the id the server assigned').toBe(device.id);

    // The guest's BAR2 write is in the client's mapping of the same memory, without an exit.
    const shared = new DataView(client.connection.memory!.map());
    expect(shared.getUint32(MAGIC_OFFSET, true).toString(16)).toBe(MAGIC.toString(16));
    expect(monitor.stats.mmio[2]).toBe(0);
    expect(monitor.stats.unassignedMmio).toBe(0);

    // Its doorbell reaches the client.
    await until(() => interrupts.length > 0, 'the client\'s interrupt');
    expect(interrupts).toEqual([0]);
    expect(device.counters().doorbellsSent).toBe(1);
  }

  it('intx: probe, BAR sizing and placement, IVPosition, BAR2 zero copy, doorbell out, INTx in', async () => {
    const env = await setUp('intx');
    const { client, monitor, device, word } = env;
    await phase1(env);
    expect((word('intline') >>> 8) & 0xff, 'Interrupt Pin INTA').toBe(1);

    // The client rings the guest: the device raises INTx (the vCPU is stopped), the guest wakes.
    client.ring(device.id, 0);
    await until(() => monitor.stats.irqLevelChanges > 0, 'the device raises INTx');
    const phase2 = monitor.run();
    expect(phase2.done).toBe(2);
    expect(word('irqs')).toBe(1);
    expect(word('intrstatus')).toBe(1);
    expect(device.mmioRead(0, 0x04, 4), 'IntrStatus read cleared it').toBe(0);
    expect(monitor.stats.irqLevelChanges, 'raised, then lowered by the ISR').toBe(2);
  });

  it('doorbell (MSI-X) mode: the same guest finds the device, sizes BAR0/BAR2 past BAR1, and rings the client', async () => {
    const env = await setUp('doorbell');
    await phase1(env);
    expect(env.device.bars.map((b) => b.index)).toEqual([0, 1, 2]);
    expect(env.monitor.stats.msiDropped).toBe(0);
  });

  it('with no device in the slot, every slot reads as all-ones and the probe fails', () => {
    const monitor = new KvmMonitor(kvm!);
    cleanups.push(() => monitor.close());
    const program = guest();
    monitor.load(program.assemble(), CODE_GPA);
    monitor.start(CODE_GPA);
    expect(monitor.run().done).toBe(NOT_FOUND);
    expect(monitor.stats.configReads).toBe(32);
    expect(monitor.stats.configWrites).toBe(0);
  });
});
