// Interop with real QEMU: qemu-system-x86_64's `ivshmem-doorbell` devices join OUR in-process
// IvshmemServer, next to our IvshmemDevice and IvshmemClient, and everyone rings everyone.
// QEMU runs paused under qtest (-S -qtest stdio); the test plays firmware and driver through
// port I/O (0xcf8/0xcfc) and guest-physical accesses. As in QEMU's own /ivshmem/server qtest,
// MSI-X is enabled with every table entry left masked, so a doorbell that reaches a QEMU shows
// up as its vector's pending bit in the PBA (polled every 10 ms up to a deadline).
//
// QEMU's realize blocks QEMU while it reads the server's setup messages, and the server answers
// from this process's event loop: every step here is asynchronous, nothing may block the loop.
//
// Skipped, with a console warning, when qemu-system-x86_64 (QEMU_SYSTEM_X86_64=<path> picks
// another) is unavailable.
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { serverSuite } from '../support/server-suite.js';
import { IvshmemClient } from '../../src/client/ivshmem-client.js';
import { IvshmemDevice } from '../../src/device/device.js';
import { native } from '../../src/os/binding.js';
import { IvshmemServer } from '../../src/server/ivshmem-server.js';
import { enableMsix, programVector } from '../support/device-harness.js';
import { expectNoFdLeak } from '../support/fd-leaks.js';
import { QEMU_BAR0, QEMU_BAR1, QEMU_BAR2 } from '../support/qemu-peer.js';
import { DEFAULT_QEMU, QTest, qemuUnavailableReason } from '../support/qtest.js';
import { until } from '../support/until.js';

const QEMU = process.env.QEMU_SYSTEM_X86_64 ?? DEFAULT_QEMU;
const qemuMissing = qemuUnavailableReason(QEMU);
if (qemuMissing !== null) {
  console.warn(
    `interop/qemu-doorbell.test.ts: skipping the interop tests with QEMU's ivshmem-doorbell: ${qemuMissing}`,
  );
}

const VECTORS = 2;
const SHM_SIZE = 1 << 20;
// Guest RAM where a QEMU's MSI messages land when the test unmasks a vector.
const MSI_WINDOW = 0x100000;
// Our device's MSI-X table: address and data of each vector.
const OUR_MSI_ADDRESS = 0xfee00000;
const ourMsiData = (v: number) => 0x40 + v;

const POLL_MS = 10;
const DEADLINE_MS = 5000;

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));
const hex = (v: number | bigint) => `0x${v.toString(16)}`;

/** A QEMU with one ivshmem-doorbell, set up by the test as firmware and driver would. */
interface Guest {
  q: QTest;
  /** IVPosition as the guest reads it. */
  ivPosition: number;
  bar0Size: number;
  bar2Size: bigint;
  /** MSI-X Message Control's table size field + 1. */
  tableSize: number;
  /** Offset of the MSI-X capability in config space. */
  msixCap: number;
  tableOffset: number;
  pbaOffset: number;
}

/** Sizes a 32-bit memory BAR (all-ones write, read back) and leaves `address` in it. */
async function size32(q: QTest, reg: number, address: number): Promise<number> {
  await q.cfgWrite(reg, 4, 0xffffffff);
  const v = await q.cfgRead(reg, 4);
  await q.cfgWrite(reg, 4, address);
  return (~(v & ~0xf) >>> 0) + 1;
}

/** Sizes the 64-bit BAR at `reg`/`reg + 4` and leaves `address` (below 4 GiB) in it. */
async function size64(q: QTest, reg: number, address: number): Promise<bigint> {
  await q.cfgWrite(reg, 4, 0xffffffff);
  await q.cfgWrite(reg + 4, 4, 0xffffffff);
  const lo = await q.cfgRead(reg, 4);
  const hi = await q.cfgRead(reg + 4, 4);
  expect(lo & 0x6, 'BAR2 is a 64-bit memory BAR').toBe(0x4);
  await q.cfgWrite(reg, 4, address);
  await q.cfgWrite(reg + 4, 4, 0);
  const mask = (BigInt(hi) << 32n) | BigInt((lo & ~0xf) >>> 0);
  return BigInt.asUintN(64, ~mask) + 1n;
}

async function setUpGuest(q: QTest): Promise<Guest> {
  await q.findDevice(0x11101af4);
  const bar0Size = await size32(q, 0x10, QEMU_BAR0);
  await size32(q, 0x14, QEMU_BAR1);
  const bar2Size = await size64(q, 0x18, QEMU_BAR2);
  await q.cfgWrite(0x04, 2, 0x6); // memory decoding + bus master
  // The MSI-X capability (ID 0x11) in the capability list.
  let msixCap = 0;
  for (let ptr = (await q.cfgRead(0x34, 1)) & 0xfc, hops = 0; ptr !== 0 && hops < 48; hops++) {
    if ((await q.cfgRead(ptr, 1)) === 0x11) {
      msixCap = ptr;
      break;
    }
    ptr = (await q.cfgRead(ptr + 1, 1)) & 0xfc;
  }
  expect(msixCap, 'MSI-X capability present').not.toBe(0);
  const control = await q.cfgRead(msixCap + 2, 2);
  const table = await q.cfgRead(msixCap + 4, 4);
  const pba = await q.cfgRead(msixCap + 8, 4);
  expect([table & 7, pba & 7], 'MSI-X table and PBA live in BAR1').toEqual([1, 1]);
  // MSI-X on; every table entry stays masked (its reset state), so doorbells pend.
  await q.cfgWrite(msixCap + 2, 2, (control & 0x3fff) | 0x8000);
  const ivPosition = Number(await q.read(QEMU_BAR0 + 8, 4));
  return {
    q,
    ivPosition,
    bar0Size,
    bar2Size,
    tableSize: (control & 0x7ff) + 1,
    msixCap,
    tableOffset: (table & ~7) >>> 0,
    pbaOffset: (pba & ~7) >>> 0,
  };
}

async function pending(g: Guest, vector: number): Promise<boolean> {
  const dword = Number(await g.q.read(QEMU_BAR1 + g.pbaOffset + 4 * (vector >> 5), 4));
  return ((dword >>> (vector & 31)) & 1) === 1;
}

/** Polls the guest's PBA until `vector` is pending (fails at the deadline). */
async function untilPending(g: Guest, vector: number, what: string): Promise<void> {
  await until(
    () => pending(g, vector),
    `${what}: PBA bit ${vector} of the QEMU with IVPosition ${g.ivPosition}`,
    DEADLINE_MS,
    POLL_MS,
  );
}

/** The guest writes its Doorbell register: rings `vector` of peer `dest`. */
async function guestRing(g: Guest, dest: number, vector: number): Promise<void> {
  await g.q.write(QEMU_BAR0 + 0x0c, 4, ((dest << 16) | vector) >>> 0);
}

/**
 * Unmasks `vector` with its message aimed at guest RAM, checks that QEMU delivers the pending
 * message and clears the bit, then masks it again: the bit can be observed being set once more.
 */
async function deliverPending(g: Guest, vector: number): Promise<void> {
  const entry = QEMU_BAR1 + g.tableOffset + 16 * vector;
  const data = 0x5eed0000 + vector;
  await g.q.write(MSI_WINDOW + 4 * vector, 4, 0);
  await g.q.write(entry, 4, MSI_WINDOW + 4 * vector);
  await g.q.write(entry + 4, 4, 0);
  await g.q.write(entry + 8, 4, data);
  await g.q.write(entry + 12, 4, 0); // unmask: the pending message goes out
  expect(Number(await g.q.read(MSI_WINDOW + 4 * vector, 4)), `vector ${vector}'s message in guest RAM`).toBe(data);
  expect(await pending(g, vector), `PBA bit ${vector} after unmasking`).toBe(false);
  await g.q.write(entry + 12, 4, 1);
  await g.q.write(MSI_WINDOW + 4 * vector, 4, 0);
}

describe.skipIf(qemuMissing !== null)("QEMU's ivshmem-doorbell on our server", () => {
  // First in the block, so its fd comparison runs after every other afterAll. The warm-up opens
  // what Node keeps once per process (the native addon, libuv's child-process signal pipe).
  expectNoFdLeak(async () => {
    native();
    await new Promise<void>((resolve, reject) => {
      const child = spawn(QEMU, ['--version'], { stdio: 'ignore' });
      child.once('error', reject);
      child.once('exit', () => resolve());
    });
  });

  // Everything a test started goes, newest first, even when the test failed midway; watchers
  // closed in cleanups release their fds on the next loop turn, before the leftovers are counted.
  const { cleanups, startServer } = serverSuite({
    name: 'doorbell',
    size: SHM_SIZE,
    vectors: VECTORS,
    settle: () => tick(50),
  });

  /** Starts a QEMU whose ivshmem-doorbell joins `server`; resolves with it set up and its join id. */
  async function startGuest(server: IvshmemServer): Promise<{ guest: Guest; joinedAs: number }> {
    const joins: number[] = [];
    const onJoin = (id: number) => joins.push(id);
    server.on('join', onJoin);
    let q: QTest;
    try {
      // Asynchronous: while QEMU's realize waits for the setup messages, the server sends them.
      q = await QTest.start(
        [
          '-chardev',
          `socket,id=chr0,path=${server.socketPath}`,
          '-device',
          `ivshmem-doorbell,chardev=chr0,vectors=${VECTORS}`,
        ],
        { qemu: QEMU, lifetimeS: 60 },
      );
    } finally {
      server.off('join', onJoin);
    }
    cleanups.push(() => q.close());
    expect(joins, 'server joins while this QEMU started').toHaveLength(1);
    return { guest: await setUpGuest(q), joinedAs: joins[0] };
  }

  interface Msi {
    address: number;
    data: number;
    vector: number;
  }
  /** Our device on `server`, with MSI-X enabled and every vector unmasked (data = 0x40 + vector). */
  async function joinDevice(server: IvshmemServer): Promise<{ device: IvshmemDevice; msi: Msi[] }> {
    const msi: Msi[] = [];
    const device = await IvshmemDevice.create({
      mode: 'doorbell',
      vectors: VECTORS,
      server: server.socketPath,
      transport: { setIrqLevel() {}, sendMsi: (address, data, vector) => msi.push({ address, data, vector }) },
    });
    cleanups.push(() => device.close());
    enableMsix(device);
    for (let v = 0; v < VECTORS; v++) programVector(device, v, OUR_MSI_ADDRESS, ourMsiData(v), false);
    return { device, msi };
  }

  async function joinClient(
    server: IvshmemServer,
  ): Promise<{ client: IvshmemClient; interrupts: number[]; leaves: number[] }> {
    const client = await IvshmemClient.connect(server.socketPath, { vectors: VECTORS });
    cleanups.push(() => client.close());
    const interrupts: number[] = [];
    const leaves: number[] = [];
    client.on('interrupt', (vector) => interrupts.push(vector));
    client.on('leave', (peer) => leaves.push(peer));
    return { client, interrupts, leaves };
  }

  it('(a) a QEMU joins: IVPosition is the id we assigned, BAR2 and MSI-X sized by the server, memory shared', async () => {
    const server = startServer();
    const { guest, joinedAs } = await startGuest(server);
    expect(server.peerIds).toEqual([joinedAs]);
    expect(guest.ivPosition).toBe(joinedAs);
    expect(guest.bar0Size).toBe(256);
    expect(guest.bar2Size).toBe(BigInt(server.memory.size));
    expect(server.memory.size).toBe(SHM_SIZE);
    expect(guest.tableSize).toBe(server.vectors);

    // Guest writes through BAR2 show in the server's mapping...
    const ours = new Uint8Array(server.memory.map());
    const fromGuest = Uint8Array.from({ length: 64 }, (_, i) => (i * 37 + 11) & 0xff);
    for (const offset of [0, 0x1234, SHM_SIZE - 64]) {
      await guest.q.memWrite(QEMU_BAR2 + offset, fromGuest);
      expect([...ours.subarray(offset, offset + 64)], `server view at ${hex(offset)}`).toEqual([...fromGuest]);
    }
    await guest.q.write(QEMU_BAR2 + 0x800, 8, 0x0123456789abcdefn);
    expect(new DataView(ours.buffer).getBigUint64(0x800, true)).toBe(0x0123456789abcdefn);
    // ...and the server's writes show through BAR2.
    for (const offset of [8, 0x4000, SHM_SIZE - 32]) {
      const fromHost = Uint8Array.from({ length: 32 }, (_, i) => (offset + i * 13) & 0xff);
      ours.set(fromHost, offset);
      expect([...(await guest.q.memRead(QEMU_BAR2 + offset, 32))], `guest view at ${hex(offset)}`).toEqual([
        ...fromHost,
      ]);
    }
    new DataView(ours.buffer).setUint32(0x10, 0xcafef00d, true);
    expect(await guest.q.read(QEMU_BAR2 + 0x10, 4)).toBe(0xcafef00dn);
  });

  it("(b) two QEMUs on our server ring each other (QEMU's /ivshmem/server recipe)", async () => {
    const server = startServer();
    const vm1 = (await startGuest(server)).guest;
    const vm2 = (await startGuest(server)).guest;
    expect(new Set([vm1.ivPosition, vm2.ivPosition]).size).toBe(2);
    expect(server.peerIds).toEqual([vm1.ivPosition, vm2.ivPosition]);
    expect([vm1.tableSize, vm2.tableSize]).toEqual([2, 2]);

    expect(await pending(vm1, 0)).toBe(false);
    await guestRing(vm2, vm1.ivPosition, 0);
    await untilPending(vm1, 0, 'VM2 rang VM1 vector 0');
    expect(await pending(vm1, 1)).toBe(false);
    expect(await pending(vm2, 0)).toBe(false);

    expect(await pending(vm2, 1)).toBe(false);
    await guestRing(vm1, vm2.ivPosition, 1);
    await untilPending(vm2, 1, 'VM1 rang VM2 vector 1');
    expect(await pending(vm2, 0)).toBe(false);

    // Both guests also see one memory.
    await vm1.q.write(QEMU_BAR2 + 0x100, 4, 0x11223344);
    expect(await vm2.q.read(QEMU_BAR2 + 0x100, 4)).toBe(0x11223344n);
  });

  it('(c) our device and our client ring a QEMU, and it rings them, in both directions', async () => {
    const server = startServer();
    const { guest, joinedAs: qemuId } = await startGuest(server);
    const { device, msi } = await joinDevice(server);
    const { client, interrupts } = await joinClient(server);
    expect(server.peerIds).toEqual([qemuId, device.id, client.id]);
    expect(device.mmioRead(0, 8, 4)).toBe(device.id);
    expect(device.peerVectors(qemuId)).toBe(VECTORS);
    expect(client.peers.get(qemuId)).toBe(VECTORS);

    // Our device's doorbell → QEMU's pending bit, on each vector.
    for (let v = 0; v < VECTORS; v++) {
      expect(await pending(guest, v)).toBe(false);
      device.mmioWrite(0, 0x0c, 4, (qemuId << 16) | v);
      await untilPending(guest, v, `our device rang QEMU vector ${v}`);
    }
    expect(device.counters().doorbellsSent).toBe(VECTORS);
    for (let v = 0; v < VECTORS; v++) await deliverPending(guest, v);

    // QEMU's doorbell → our transport's sendMsi, with the vector and its table entry.
    for (let v = 0; v < VECTORS; v++) {
      await guestRing(guest, device.id, v);
      await until(() => msi.length === v + 1, `QEMU rang our device vector ${v}`);
      expect(msi[v]).toEqual({ address: OUR_MSI_ADDRESS, data: ourMsiData(v), vector: v });
    }

    // Our client's ring → QEMU's pending bit.
    for (let v = VECTORS - 1; v >= 0; v--) {
      expect(await pending(guest, v)).toBe(false);
      client.ring(qemuId, v);
      await untilPending(guest, v, `our client rang QEMU vector ${v}`);
    }

    // QEMU's doorbell → the client's 'interrupt' event.
    for (let v = 0; v < VECTORS; v++) {
      await guestRing(guest, client.id, v);
      await until(() => interrupts.length === v + 1, `QEMU rang our client vector ${v}`);
      expect(interrupts[v]).toBe(v);
    }
    // Nothing went astray: the device got only its own rings, the client only its own.
    await tick(50);
    expect(msi).toHaveLength(VECTORS);
    expect(interrupts).toEqual([0, 1]);
  });

  it('(d) a QEMU that leaves is announced: server leave, device route gone, client peer gone', async () => {
    const server = startServer();
    const leaves: [number, string][] = [];
    server.on('leave', (id, reason) => leaves.push([id, reason]));
    const { guest: staying } = await startGuest(server);
    const { guest: leaving, joinedAs: leavingId } = await startGuest(server);
    const { device } = await joinDevice(server);
    const { client, leaves: clientLeaves } = await joinClient(server);
    expect(device.peerVectors(leavingId)).toBe(VECTORS);
    expect([...client.peers.keys()]).toContain(leavingId);

    await leaving.q.close(); // SIGTERM to QEMU: its socket to the server closes
    await until(() => leaves.length > 0, 'the server noticed the QEMU leaving');
    expect(leaves.map(([id]) => id)).toEqual([leavingId]);
    await until(() => device.peerVectors(leavingId) === 0, "our device's route to the QEMU that left disappears");
    await until(() => !client.peers.has(leavingId), "our client's peer list drops the QEMU that left");
    expect(clientLeaves).toEqual([leavingId]);
    expect(server.peerIds).toEqual([staying.ivPosition, device.id, client.id]);

    // A doorbell to the departed peer is dropped; the one that stayed is still reachable.
    device.mmioWrite(0, 0x0c, 4, leavingId << 16);
    expect(device.counters().doorbellsDropped.noPeer).toBe(1);
    expect(() => client.ring(leavingId, 0)).toThrow(/cannot find peer_id/);
    expect(device.peerVectors(staying.ivPosition)).toBe(VECTORS);
    device.mmioWrite(0, 0x0c, 4, (staying.ivPosition << 16) | 1);
    await untilPending(staying, 1, 'our device rang the QEMU that stayed');
    expect(leaves).toHaveLength(1);
  });
});
