// The reference monitor (src/monitors/kvm/monitor.ts) with a real vCPU and a real-mode guest that does
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
import { until } from '../support/until.js';
import { IvshmemClient } from '../../src/client/ivshmem-client.js';
import type { IvshmemDevice } from '../../src/device/device.js';
import { Kvm } from '../../src/monitors/kvm/kvm.js';
import { KvmMonitor } from '../../src/monitors/kvm/monitor.js';
import { IvshmemServer } from '../../src/server/ivshmem-server.js';
import { expectNoFdLeak } from '../support/fd-leaks.js';
import {
  BAR0_GPA,
  BAR2_GPA,
  CODE_GPA,
  IRQ,
  IVSHMEM_ID,
  MAGIC,
  MAGIC_OFFSET,
  NOT_FOUND,
  SHM_SIZE,
  buildGuest,
  loadGuest,
} from '../support/kvm-guest.js';

let kvm: Kvm | undefined;
try {
  kvm = Kvm.open();
} catch (err) {
  console.warn(
    `monitors/kvm-monitor.test.ts: skipped, /dev/kvm cannot be opened (${(err as { code?: string }).code ?? err})`,
  );
}

// The guest (probe, BARs, IVPosition, BAR2 store, doorbell, then INTx) is test/support/kvm-guest.ts.
const guest = () => buildGuest();

describe.skipIf(kvm === undefined)(
  'KvmMonitor: a real-mode guest finds, programs and uses an ivshmem device on our server',
  () => {
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
        socketPath: join(dir, `s${n++}.sock`),
        memory: { shm: `ivshmem-kvm-monitor-${process.pid}-${n++}` },
        size: SHM_SIZE,
        vectors: 1,
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
      const word = loadGuest(monitor, program, (client.id << 16) | 0);
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
      await until(() => interrupts.length > 0, "the client's interrupt");
      expect(interrupts).toEqual([0]);
      expect(device.counters().doorbellsSent).toBe(1);
    }

    it('intx: probe, BAR sizing and placement, IVPosition, BAR2 zero copy, doorbell out, INTx in', async () => {
      const env = await setUp('intx');
      const { client, monitor, device, word } = env;
      await phase1(env);
      expect((word('intline') >>> 8) & 0xff, 'Interrupt Pin INTA').toBe(1);

      // The client rings the guest: the monitor's kicker sees the vector's eventfd, the device core
      // raises INTx on the vCPU's thread, and the guest wakes from HLT.
      client.ring(device.id, 0);
      const phase2 = monitor.run();
      expect(phase2.done).toBe(2);
      expect(monitor.kickable, 'KVM_CAP_IMMEDIATE_EXIT').toBe(true);
      expect(monitor.stats.vectorWakeups).toBe(1);
      expect(word('irqs')).toBe(1);
      expect(word('intrstatus')).toBe(1);
      expect(word('received').toString(16), 'BAR2 read back after the wake-up').toBe(MAGIC.toString(16));
      expect(device.mmioRead(0, 0x04, 4), 'IntrStatus read cleared it').toBe(0);
      expect(monitor.stats.irqLevelChanges, 'raised, then lowered by the ISR').toBe(2);
    });

    it('doorbell (MSI-X) mode: the same guest finds the device, sizes BAR0/BAR2 past BAR1, and rings the client', async () => {
      const env = await setUp('doorbell');
      await phase1(env);
      expect(env.device.bars.map((b) => b.index)).toEqual([0, 1, 2]);
      expect(env.monitor.stats.msiSignalled + env.monitor.stats.msiBlocked, 'no vector fired yet').toBe(0);
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
  },
);
