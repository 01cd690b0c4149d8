// The doorbell fast path of the reference monitor (KvmMonitor with `ioeventfd: true`): a real-mode
// guest programs BAR0 through 0xcf8/0xcfc and rings a host IvshmemClient through the in-process
// IvshmemServer. The client sees the same interrupt with the fast path on and off; with it on the
// doorbell write never exits (the monitor sees no BAR0 access and the device core counts nothing),
// a value with garbage in bits 15..8 misses every datamatch and takes the WASM path, the
// ioeventfds follow BAR0 when it moves or stops decoding, and a peer that leaves loses its
// ioeventfd (the next ring exits and the core counts a drop). Skipped without /dev/kvm.
import { afterAll, describe, expect, it } from 'vitest';
import { until } from '../support/until.js';
import { IvshmemClient } from '../../src/client/ivshmem-client.js';
import type { IvshmemDevice } from '../../src/device/device.js';
import { Kvm } from '../../src/monitors/kvm/kvm.js';
import { KvmMonitor, MONITOR_DONE_PORT } from '../../src/monitors/kvm/monitor.js';
import type { Asm16 } from '../support/asm16.js';
import { expectNoFdLeak } from '../support/fd-leaks.js';
import { BAR0_GPA, CODE_GPA, SHM_SIZE, bar0Prologue } from '../support/kvm-guest.js';
import { serverSuite } from '../support/server-suite.js';

let kvm: Kvm | undefined;
try {
  kvm = Kvm.open();
} catch (err) {
  console.warn(
    `monitors/kvm-fastpath.test.ts: skipped, /dev/kvm cannot be opened (${(err as { code?: string }).code ?? err})`,
  );
}

const BAR0_MOVED = 0xd0000;

/** Programs BAR0 of 00:<slot>.0, enables memory decoding, then rings `doorbell` through ES = `bar0seg` once per run. */
function guest(slot: number): Asm16 {
  const a = bar0Prologue(slot);
  a.label('ring');
  a.load32('bar0seg').movSegAx('es');
  a.load32('doorbell').es().store32(0x0c);
  a.outb(MONITOR_DONE_PORT, 1);
  a.jmp('ring');
  a.dd('bar0seg').dd('doorbell');
  return a;
}

const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(kvm === undefined)('KvmMonitor doorbell fast path (KVM ioeventfd)', () => {
  expectNoFdLeak();
  const { cleanups, startServer } = serverSuite({ name: 'kvm-fastpath', size: SHM_SIZE, vectors: 1 });
  afterAll(() => kvm?.close());

  async function setUp(ioeventfd: boolean) {
    const server = startServer();
    const client = await IvshmemClient.connect(server.socketPath, { vectors: 1 });
    cleanups.push(() => client.close());
    const interrupts: number[] = [];
    client.on('interrupt', (vector) => interrupts.push(vector));
    const monitor = new KvmMonitor(kvm!, { ioeventfd });
    cleanups.push(() => monitor.close());
    const device: IvshmemDevice = await monitor.createDevice({
      mode: 'doorbell',
      vectors: 1,
      server: server.socketPath,
    });
    cleanups.push(() => device.close());
    await until(
      () => client.peers.has(device.id) && device.connection!.peers.has(client.id),
      'client and device know each other',
    );
    const program = guest(monitor.slot);
    monitor.load(program.assemble(), CODE_GPA);
    const data = new DataView(monitor.ram.buffer);
    data.setUint32(program.address('bar0seg'), BAR0_GPA >> 4, true);
    const setDoorbell = (value: number) => data.setUint32(program.address('doorbell'), value >>> 0, true);
    setDoorbell(client.id * 0x10000);
    monitor.start(CODE_GPA);
    return { client, interrupts, monitor, device, data, program, setDoorbell };
  }

  for (const ioeventfd of [false, true]) {
    it(`ioeventfd ${ioeventfd ? 'on' : 'off'}: the guest's doorbell reaches the client's vector 0`, async () => {
      const { client, interrupts, monitor, device } = await setUp(ioeventfd);
      expect(monitor.ioeventfd).toBe(ioeventfd);
      expect(monitor.run().done).toBe(1);
      await until(() => interrupts.length > 0, "the client's interrupt");
      expect(interrupts).toEqual([0]);
      if (ioeventfd) {
        const routes = monitor.ioeventfds
          .map((r) => [r.peer, r.vector, r.address, r.datamatch])
          .sort((x, y) => x[0] - y[0]);
        expect(routes).toEqual(
          [client.id, device.id].sort((x, y) => x - y).map((peer) => [peer, 0, BAR0_GPA + 0x0c, peer * 0x10000]),
        );
        expect(monitor.stats.mmio[0], 'the doorbell write did not exit').toBe(0);
        expect(monitor.stats.doorbellExits).toBe(0);
        expect(device.counters().doorbellsSent, 'the WASM core never saw it').toBe(0);
      } else {
        expect(monitor.ioeventfds).toEqual([]);
        expect(monitor.stats.mmio[0]).toBe(1);
        expect(monitor.stats.doorbellExits).toBe(1);
        expect(device.counters().doorbellsSent).toBe(1);
      }
    });
  }

  it('a value with garbage in bits 15..8 misses the datamatch and takes the WASM path (which ignores those bits)', async () => {
    const { client, interrupts, monitor, device, setDoorbell } = await setUp(true);
    setDoorbell(client.id * 0x10000 + 0x5a00);
    expect(monitor.run().done).toBe(1);
    expect(monitor.stats.doorbellExits).toBe(1);
    expect(device.counters().doorbellsSent).toBe(1);
    await until(() => interrupts.length > 0, "the client's interrupt");
    expect(interrupts).toEqual([0]);
    // The clean value again: fast path, no exit, no count.
    setDoorbell(client.id * 0x10000);
    expect(monitor.run().done).toBe(1);
    await until(() => interrupts.length > 1, "the client's second interrupt");
    expect(monitor.stats.doorbellExits).toBe(1);
    expect(device.counters().doorbellsSent).toBe(1);
  });

  it('the ioeventfds follow BAR0 when it moves and go away when it stops decoding', async () => {
    const { interrupts, monitor, device, data, program } = await setUp(true);
    expect(monitor.run().done).toBe(1);
    await until(() => interrupts.length === 1, "the client's interrupt");

    device.configWrite(0x10, 4, BAR0_MOVED); // as firmware would, between runs
    expect(monitor.ioeventfds.map((r) => r.address)).toEqual([BAR0_MOVED + 0x0c, BAR0_MOVED + 0x0c]);
    data.setUint32(program.address('bar0seg'), BAR0_MOVED >> 4, true);
    expect(monitor.run().done).toBe(1);
    await until(() => interrupts.length === 2, "the client's interrupt at the new BAR0");
    expect(monitor.stats.doorbellExits).toBe(0);

    device.configWrite(0x04, 2, 0); // memory decoding off: BAR0 unmapped
    expect(monitor.ioeventfds).toEqual([]);
    expect(monitor.stats.ioeventfdsDeassigned).toBe(4);
    expect(monitor.run().done).toBe(1);
    expect(monitor.stats.unassignedMmio, 'the write hit nothing').toBe(1);
    await tick(30);
    expect(interrupts).toHaveLength(2);
    expect(device.counters().doorbellsSent).toBe(0);

    device.configWrite(0x04, 2, 2); // decoding back on: registered again
    expect(monitor.ioeventfds).toHaveLength(2);
    monitor.close();
    expect(monitor.ioeventfds, 'close deassigns').toEqual([]);
    expect(monitor.stats.ioeventfdErrors).toBe(0);
  });

  it('after the peer leaves, its ioeventfd is gone: the ring exits and the core counts a drop', async () => {
    const { client, monitor, device } = await setUp(true);
    const peer = client.id;
    expect(monitor.run().done).toBe(1);
    expect(monitor.ioeventfds.some((r) => r.peer === peer)).toBe(true);

    client.close(); // closed again by the cleanup: close() is idempotent
    await until(() => !device.connection!.peers.has(peer), 'the device hears the peer leave');
    expect(monitor.ioeventfds.map((r) => r.peer)).toEqual([device.id]);
    expect(monitor.run().done).toBe(1);
    expect(monitor.stats.doorbellExits).toBe(1);
    expect(device.counters().doorbellsDropped.noPeer).toBe(1);
    expect(device.counters().doorbellsSent).toBe(0);
    expect(monitor.stats.ioeventfdErrors).toBe(0);
  });
});
