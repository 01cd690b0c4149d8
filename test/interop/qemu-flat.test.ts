// A flat device (mode 'flat', QEMU's ivshmem-flat shape) and a real QEMU ivshmem-doorbell (PCI)
// on one of our servers: the two shapes speak the same server protocol, share the memory and
// ring each other. QEMU runs paused under qtest with MSI-X on and its vectors masked, so a ring
// that reaches it shows up as a pending bit in its PBA (support/qemu-peer.ts); a ring that reaches
// the flat device is a pulse on its one IRQ line. A server that speaks another protocol version
// is a coded error on the flat device (QEMU's flat device only traces the version), with the
// process going on. Skipped, with a console warning, without qemu-system-x86_64.
import { createServer } from 'node:net';
import type { Server } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { IvshmemDevice } from '../../src/device/device.js';
import { QEMU_BAR0, QEMU_BAR2, setUpQemuDoorbell, until } from '../support/qemu-peer.js';
import { DEFAULT_QEMU, QTest, qemuUnavailableReason } from '../support/qtest.js';
import { serverSuite } from '../support/server-suite.js';

const QEMU = process.env.QEMU_SYSTEM_X86_64 ?? DEFAULT_QEMU;
const qemuMissing = qemuUnavailableReason(QEMU);
if (qemuMissing !== null) console.warn(`interop/qemu-flat.test.ts: skipping the flat ↔ QEMU tests: ${qemuMissing}`);

// Where a board would wire the flat device (any addresses do: the monitor chooses them).
const REGS = 0x400f_f000;
const MEM = 0x6000_0000;

describe('a flat device next to real QEMU peers', () => {
  const { cleanups, startServer } = serverSuite({ name: 'flat', size: 1 << 20, vectors: 2 });

  it.skipIf(qemuMissing !== null)(
    'rings a QEMU ivshmem-doorbell and is rung by it; both see the same memory; it hears QEMU leave',
    async () => {
      const server = startServer();
      const q = await QTest.start(
        ['-chardev', `socket,id=chr0,path=${server.socketPath}`, '-device', 'ivshmem-doorbell,chardev=chr0,vectors=2'],
        { qemu: QEMU, lifetimeS: 60 },
      );
      let qemuRunning = true;
      cleanups.push(() => qemuRunning && q.close());
      const { ivPosition: qemuId, pba } = await setUpQemuDoorbell(q);
      const pending = async (v: number) => ((Number(await q.read(pba, 4)) >>> v) & 1) === 1;

      const irq: number[] = [];
      const device = await IvshmemDevice.create({
        mode: 'flat',
        vectors: 2,
        server: server.socketPath,
        registersAddress: REGS,
        memoryAddress: MEM,
        transport: { setIrqLevel: (level) => irq.push(level), sendMsi: () => irq.push(-1) },
      });
      cleanups.push(() => device.close());
      expect(device.id).not.toBe(qemuId);
      expect(device.mmioRead(0, 0x08, 4), "the flat device's IVPosition").toBe(device.id);
      await until(() => device.peerVectors(qemuId) === 2, "QEMU's two vectors announced to the flat device");

      // The flat device rings QEMU's vector 1; a vector past QEMU's two is dropped, not rung.
      device.mmioWrite(0, 0x0c, 4, ((qemuId << 16) | 0x0101) >>> 0);
      expect(device.counters().doorbellsDropped.noVector).toBe(1);
      expect(await pending(1), 'PBA bit 1 before the ring').toBe(false);
      device.mmioWrite(0, 0x0c, 4, ((qemuId << 16) | 1) >>> 0);
      await until(() => pending(1), "QEMU's PBA bit 1 after the flat device rang it");
      expect(await pending(0)).toBe(false);

      // QEMU's guest rings each of the flat device's vectors: one pulse per ring.
      for (const v of [0, 1]) {
        await q.write(QEMU_BAR0 + 0x0c, 4, ((device.id << 16) | v) >>> 0);
        await until(() => device.vectorCounters()[v].delivered === 1, `flat vector ${v} delivered`);
      }
      expect(irq).toEqual([1, 0, 1, 0]);

      // One memory: each side reads what the other wrote.
      await q.write(QEMU_BAR2 + 0x100, 4, 0x5a5a1234);
      expect(device.mmioRead(2, 0x100, 4)).toBe(0x5a5a1234);
      device.mmioWrite(2, 0x200, 4, 0xfeedbeef);
      expect(Number(await q.read(QEMU_BAR2 + 0x200, 4))).toBe(0xfeedbeef);

      await q.close();
      qemuRunning = false;
      await until(() => device.peerVectors(qemuId) === 0, 'the flat device hears QEMU leave');
      device.mmioWrite(0, 0x0c, 4, ((qemuId << 16) | 1) >>> 0);
      expect(device.counters().doorbellsDropped.noPeer).toBe(1);
    },
    60_000,
  );

  it('refuses a server of another protocol version with a coded error; the process goes on', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ivshmem-flat-version-'));
    let fake: Server | undefined;
    try {
      const path = join(dir, 'sock');
      fake = createServer((socket) => {
        const version = Buffer.alloc(8);
        version.writeBigInt64LE(1n); // QEMU's protocol is version 0
        socket.end(version);
      });
      await new Promise<void>((resolve) => fake!.listen(path, resolve));
      await expect(
        IvshmemDevice.create({
          mode: 'flat',
          server: path,
          registersAddress: REGS,
          memoryAddress: MEM,
          transport: { setIrqLevel() {}, sendMsi() {} },
        }),
      ).rejects.toMatchObject({ code: 'ERR_IVSHMEM_PROTOCOL_VERSION' });
    } finally {
      await new Promise((resolve) => (fake ? fake.close(resolve) : resolve(undefined)));
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
