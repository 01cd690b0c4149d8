// KVM guests (src/monitors/kvm/monitor.ts, with the real-mode guest of test/support/kvm-guest.ts) and other
// peers on one in-process IvshmemServer:
// (a) a KVM guest and a real QEMU ivshmem-doorbell ring each other. QEMU runs paused under qtest
//     with MSI-X on and its vector masked, so the guest's ring shows up as QEMU's PBA bit 0 (as in
//     interop/qemu-doorbell.test.ts); QEMU rings back with a qtest write to its BAR0 Doorbell, which wakes
//     the halted KVM guest through INTx. The guest's BAR2 store is read back through QEMU's BAR2.
// (b) two KVM guests in two processes: guest A (test/support/kvm-peer-child.mjs, running the
//     bundle of test/support/kvm-bundle.ts) stores a value into BAR2 and rings guest B (this
//     process), which wakes from INTx and reads the value back from its own BAR2 mapping.
// (c) what a guest sees of the device, through KVM exits on our monitor and through QEMU: the
//     same BAR placement and MSI-X enable on both, then all of config space, BAR0's registers,
//     MSI-X entry 0 and the PBA compared word for word.
// A vCPU runs on the calling thread until the guest writes its done port: host-side steps (rings,
// QEMU commands) happen between monitor.run() calls. Skipped, with a warning, per case, when
// /dev/kvm cannot be opened or QEMU is missing.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { serverSuite } from '../support/server-suite.js';
import { QEMU_BAR0, QEMU_BAR1, QEMU_BAR2, setUpQemuDoorbell, until } from '../support/qemu-peer.js';
import { Asm16 } from '../support/asm16.js';
import { assembleMsiGuest } from '../support/kvm-msi-guest.js';
import { Kvm } from '../../src/monitors/kvm/kvm.js';
import { KvmMonitor, MONITOR_DONE_PORT } from '../../src/monitors/kvm/monitor.js';
import { IvshmemServer } from '../../src/server/ivshmem-server.js';
import { Inbox } from '../support/inbox.js';
import { kvmBundle } from '../support/kvm-bundle.js';
import {
  CODE_GPA,
  DONE_PORT,
  IRQ,
  IVSHMEM_ID,
  MAGIC_OFFSET,
  SHM_SIZE,
  STACK_TOP,
  buildGuest,
  loadGuest,
} from '../support/kvm-guest.js';
import { DEFAULT_QEMU, QTest, qemuUnavailableReason } from '../support/qtest.js';

const CHILD = fileURLToPath(new URL('../support/kvm-peer-child.mjs', import.meta.url));
const QEMU = process.env.QEMU_SYSTEM_X86_64 ?? DEFAULT_QEMU;

let kvm: Kvm | undefined;
let kvmMissing: string | null = null;
try {
  kvm = Kvm.open();
} catch (err) {
  kvmMissing = `/dev/kvm cannot be opened (${(err as { code?: string }).code ?? err})`;
  console.warn(`monitors/kvm-peers.test.ts: skipping the KVM peer tests: ${kvmMissing}`);
}
const qemuMissing = kvmMissing === null ? qemuUnavailableReason(QEMU) : null;
if (qemuMissing !== null) console.warn(`monitors/kvm-peers.test.ts: skipping the KVM ↔ QEMU test: ${qemuMissing}`);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---- (a): the QEMU side, set up over qtest as firmware and driver would ----

// ---- (c): a guest that places the BARs where setUpQemuDoorbell puts QEMU's, enables MSI-X the
// same way, and dumps what it can read: config dwords 0x00..0xfc, BAR0 0x00..0x0c, MSI-X entry 0
// and the first PBA dword (BAR1 + 0x800). BARs above 1 MiB are reached through a flat GS.

const DUMP_BAR_WORDS: [string, number][] = [
  ['intrmask', QEMU_BAR0],
  ['intrstatus', QEMU_BAR0 + 4],
  ['ivposition', QEMU_BAR0 + 8],
  ['doorbell', QEMU_BAR0 + 12],
  ['msix0', QEMU_BAR1],
  ['msix4', QEMU_BAR1 + 4],
  ['msix8', QEMU_BAR1 + 8],
  ['msix12', QEMU_BAR1 + 12],
  ['pba', QEMU_BAR1 + 0x800],
];

function buildDumpGuest(): Asm16 {
  const a = new Asm16(CODE_GPA);
  const cfg = (reg: number) => a.movEaxEbx().orAl(reg).movDx(0xcf8).outDxEax().movDx(0xcfc);
  a.label('start').cli().xorAxAx().movSegAx('ds').movSegAx('ss').movSp(STACK_TOP);
  a.lgdt('gdtr').movEaxCr0().orAl(1).movCr0Eax().movBx(0x08).movSegBx('gs').andAl(0xfe).movCr0Eax();
  a.movEbx(0x8000_0000);
  a.label('probe');
  cfg(0x00).inEaxDx();
  a.cmpEax(IVSHMEM_ID).jcc('je', 'found');
  a.addEbx(0x800).cmpEbx(0x8001_0000).jcc('jb', 'probe');
  a.outb(DONE_PORT, 0xee);
  a.label('found');
  for (const [reg, v] of [
    [0x10, QEMU_BAR0],
    [0x14, QEMU_BAR1],
    [0x18, QEMU_BAR2],
    [0x1c, 0],
    [0x04, 0x6],
  ])
    cfg(reg).movEax(v).outDxEax();
  cfg(0x40).inEaxDx().andEax(0x3fff_ffff).orEax(0x8000_0000).outDxEax(); // MSI-X enable, function mask off
  for (let reg = 0; reg < 0x100; reg += 4) cfg(reg).inEaxDx().store32(`cfg${reg}`);
  for (const [name, address] of DUMP_BAR_WORDS) a.movEdi(address).gs().loadEdi32().store32(name);
  a.outb(DONE_PORT, 1);
  a.label('gdt').imm32(0).imm32(0).imm32(0x0000_ffff).imm32(0x00cf_9200);
  a.label('gdtr').imm16(15).emit(0, 0, 0, 0);
  for (let reg = 0; reg < 0x100; reg += 4) a.dd(`cfg${reg}`);
  for (const [name] of DUMP_BAR_WORDS) a.dd(name);
  return a;
}

// ---- (b): guest A in a child process ----

interface ChildMessage {
  type: string;
  id?: number;
  error?: string;
  done?: number;
  bar2Mapped?: boolean;
  doorbellsSent?: number;
  bar2Exits?: number;
}

function spawnPeer(bundle: string, socketPath: string) {
  const child: ChildProcess = spawn(process.execPath, [CHILD, bundle, socketPath], {
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const inbox = new Inbox<ChildMessage>({
    name: 'guest A',
    context: () => stderr,
    gone: () =>
      child.exitCode !== null || child.signalCode !== null ? `exited (${child.exitCode ?? child.signalCode})` : null,
  });
  child.on('message', inbox.push);
  /** The next message of `type` (a 'fatal' one, or the child's exit, fails it). */
  const next = (type: string, ms?: number) => inbox.next(type, ms);
  let stopping: Promise<number | null> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        if (child.connected) child.send({ op: 'stop' });
        const gone = await Promise.race([exited.then(() => true), sleep(5000).then(() => false)]);
        if (!gone) child.kill('SIGKILL');
      }
      return exited;
    })());
  return { send: (m: object) => child.send(m), next, stop, stderr: () => stderr };
}

describe.skipIf(kvmMissing !== null)('KVM guests and other peers on our server', () => {
  const { cleanups, startServer } = serverSuite({ name: 'kvm-peers', size: SHM_SIZE, vectors: 1 });
  afterAll(() => kvm?.close());

  /** A KVM guest with an intx device on `server`, its program loaded (doorbell dword = ring). */
  async function kvmGuest(server: IvshmemServer, options: Parameters<typeof buildGuest>[0] = {}) {
    const monitor = new KvmMonitor(kvm!, { irq: IRQ });
    cleanups.push(() => monitor.close());
    const device = await monitor.createDevice({ mode: 'intx', vectors: 1, server: server.socketPath });
    cleanups.push(() => device.close());
    const program = buildGuest(options);
    return { monitor, device, load: (doorbell: number) => loadGuest(monitor, program, doorbell) };
  }

  it("the shared guest stops on the monitor's done port", () => {
    expect(DONE_PORT).toBe(MONITOR_DONE_PORT);
  });

  it.skipIf(qemuMissing !== null)(
    '(a) a KVM guest and a QEMU ivshmem-doorbell ring each other (PBA bit one way, INTx the other)',
    async () => {
      const server = startServer();
      const value = (Math.random() * 0xffff_ffff) >>> 0;
      const { monitor, device, load } = await kvmGuest(server, { value });
      // QEMU joins after our device: its realize hears of us in the server's initial peer list.
      const q = await QTest.start(
        ['-chardev', `socket,id=chr0,path=${server.socketPath}`, '-device', 'ivshmem-doorbell,chardev=chr0,vectors=1'],
        { qemu: QEMU, lifetimeS: 60 },
      );
      cleanups.push(() => q.close());
      const { ivPosition: qemuId, pba } = await setUpQemuDoorbell(q);
      expect(server.peerIds.sort()).toEqual([device.id, qemuId].sort());
      await until(() => device.peerVectors(qemuId) === 1, `our device hears of QEMU (${qemuId})`);
      const pending = async () => (Number(await q.read(pba, 4)) & 1) === 1;
      expect(await pending(), 'PBA bit 0 before the ring').toBe(false);

      // Phase 1: the guest stores `value` into BAR2 and rings QEMU's vector 0.
      const word = load((qemuId << 16) | 0);
      expect(monitor.run().done).toBe(1);
      expect(word('ivposition')).toBe(device.id);
      expect(monitor.bar2Mapped).toBe(true);
      await until(pending, `QEMU's PBA bit 0 after the KVM guest rang peer ${qemuId}`);
      expect(device.counters().doorbellsSent).toBe(1);
      expect(device.counters().doorbellsDropped).toEqual({ noPeer: 0, noVector: 0 });
      expect(
        Number(await q.read(QEMU_BAR2 + MAGIC_OFFSET, 4)).toString(16),
        "the KVM guest's BAR2 store, through QEMU's BAR2",
      ).toBe(value.toString(16));

      // QEMU rings the KVM guest; the kicker wakes the vCPU thread, the device raises INTx, phase 2 wakes.
      expect(monitor.stats.irqLevelChanges).toBe(0);
      await q.write(QEMU_BAR0 + 0x0c, 4, (device.id << 16) | 0);
      expect(monitor.run().done).toBe(2);
      expect(monitor.stats.vectorWakeups).toBe(1);
      expect(word('irqs')).toBe(1);
      expect(word('intrstatus')).toBe(1);
      expect(word('received').toString(16)).toBe(value.toString(16));
      expect(monitor.stats.irqLevelChanges, 'raised, then lowered by the ISR').toBe(2);
    },
    60_000,
  );

  it.skipIf(qemuMissing !== null)(
    "(c) guest-visible registers through our KVM monitor equal QEMU's: config space, BAR0, MSI-X entry and PBA",
    async () => {
      const server = startServer();
      const monitor = new KvmMonitor(kvm!, { irq: IRQ });
      cleanups.push(() => monitor.close());
      const device = await monitor.createDevice({ mode: 'doorbell', vectors: 1, server: server.socketPath });
      cleanups.push(() => device.close());
      const q = await QTest.start(
        ['-chardev', `socket,id=chr0,path=${server.socketPath}`, '-device', 'ivshmem-doorbell,chardev=chr0,vectors=1'],
        { qemu: QEMU, lifetimeS: 60 },
      );
      cleanups.push(() => q.close());
      const { ivPosition: qemuId } = await setUpQemuDoorbell(q);

      const program = buildDumpGuest();
      monitor.load(assembleMsiGuest(program), CODE_GPA);
      monitor.start(CODE_GPA);
      expect(monitor.run().done).toBe(1);
      const ram = new DataView(monitor.ram.buffer);
      const guest = (label: string) => ram.getUint32(program.address(label), true);

      for (let reg = 0; reg < 0x100; reg += 4) {
        let ours = guest(`cfg${reg}`);
        let theirs = (await q.cfgRead(reg, 4)) >>> 0;
        if (reg === 0x3c) {
          // Interrupt Line is firmware's to fill in: our monitor writes its IRQ, QEMU under qtest has no BIOS.
          expect(ours & 0xff).toBe(IRQ);
          ours &= ~0xff;
          theirs &= ~0xff;
        }
        expect(ours.toString(16), `config 0x${reg.toString(16)}`).toBe(theirs.toString(16));
      }
      for (const [name, address] of DUMP_BAR_WORDS) {
        const theirs = Number(await q.read(address, 4)) >>> 0;
        if (name === 'ivposition') {
          expect(guest(name), 'IVPosition: each its own id').toBe(device.id);
          expect(theirs).toBe(qemuId);
          continue;
        }
        expect(guest(name).toString(16), name).toBe(theirs.toString(16));
      }
      expect(monitor.stats.unassignedMmio, 'every BAR access reached the device').toBe(0);
    },
    60_000,
  );

  it('(b) two KVM guests in two processes: A stores a value into BAR2 and rings B, which wakes and reads it', async () => {
    const bundle = kvmBundle();
    const server = startServer();
    // B, in this process: phase 1 (no store, no ring) leaves it ready for INTx.
    const b = await kvmGuest(server, { writeAt: null, ring: false, readAt: 0x200 });
    const wordB = b.load(0);
    expect(b.monitor.run().done).toBe(1);
    expect(b.monitor.bar2Mapped).toBe(true);

    const a = spawnPeer(bundle, server.socketPath);
    cleanups.push(() => a.stop());
    const idA = (await a.next('ready')).id!;
    expect(idA).not.toBe(b.device.id);
    expect(server.peerIds.sort()).toEqual([idA, b.device.id].sort());

    const value = ((Math.random() * 0xffff_ffff) | 1) >>> 0;
    expect(wordB('received')).toBe(0);
    a.send({ op: 'ring', peer: b.device.id, value, offset: 0x200 });
    const rang = await a.next('rang');
    expect(rang, "guest A's phase 1").toMatchObject({ done: 1, bar2Mapped: true, doorbellsSent: 1, bar2Exits: 0 });
    expect(new DataView(server.memory.map()).getUint32(0x200, true).toString(16), "the server's view").toBe(
      value.toString(16),
    );

    // B was halted-to-be: its phase 2 sleeps in HLT until the kicker passes A's ring to the core.
    expect(b.monitor.run().done).toBe(2);
    expect(b.monitor.stats.vectorWakeups).toBe(1);
    expect(wordB('irqs')).toBe(1);
    expect(wordB('intrstatus')).toBe(1);
    expect(wordB('received').toString(16), 'B read the value back from its BAR2').toBe(value.toString(16));
    expect(b.monitor.stats.mmio[2], 'no BAR2 exits: B reads guest memory').toBe(0);

    expect(await a.stop(), "guest A's exit code").toBe(0);
  }, 60_000);
});
