// The ivshmem server in-process, with real sockets, eventfds and shared memory: QEMU's message
// order, its id allocation, devices ringing each other through it, peers leaving, and clients
// that misbehave while the server keeps serving everyone else.
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { IvshmemDevice } from '../../src/device/device.js';
import { IvshmemServer } from '../../src/server/ivshmem-server.js';
import { UnixSocket } from '../../src/os/unix-socket.js';
import { native } from '../../src/os/binding.js';
import { runNewestFirst } from '../support/cleanups.js';
import { enableMsix, programVector } from '../support/device-harness.js';
import { expectNoFdLeak, openFdCount } from '../support/fd-leaks.js';
import { until } from '../support/until.js';

const tick = (ms = 20) => new Promise((r) => setTimeout(r, ms));

let dir: string;
let n = 0;
const cleanups: (() => void)[] = [];
const cleanupFailures: string[] = [];
const socketPath = () => join(dir, `s${n++}.sock`);
const shmName = () => `ivshmem-test-server-${process.pid}-${n++}`;

function startServer(vectors = 2, size = 1 << 20, extra: Partial<Parameters<typeof IvshmemServer.start>[0]> = {}) {
  const server = IvshmemServer.start({ socketPath: socketPath(), memory: { shm: shmName() }, size, vectors, ...extra });
  cleanups.push(() => server.close());
  return server;
}

interface Msi {
  address: number;
  data: number;
  vector: number;
}
async function joinDevice(server: IvshmemServer, vectors = 2) {
  const msi: Msi[] = [];
  const device = await IvshmemDevice.create({
    mode: 'doorbell',
    vectors,
    server: server.socketPath,
    transport: { setIrqLevel() {}, sendMsi: (address, data, vector) => msi.push({ address, data, vector }) },
  });
  cleanups.push(() => device.close());
  // Firmware and driver: memory + bus master, MSI-X on, each vector unmasked with data = vector.
  enableMsix(device);
  for (let v = 0; v < vectors; v++) programVector(device, v, 0xfee00000, 0x40 + v, false);
  return { device, msi };
}

// Reads everything a raw client has been sent so far: [value, hasFd] pairs.
async function drainRaw(socket: UnixSocket, count: number): Promise<[number, boolean][]> {
  const got: [number, boolean][] = [];
  const end = Date.now() + 2000;
  while (got.length < count && Date.now() < end) {
    const m = socket.receive();
    if (m === null) {
      await tick(2);
      continue;
    }
    got.push([Number(m.value), m.fd >= 0]);
    if (m.fd >= 0) native().close(m.fd);
  }
  return got;
}

// Registered first, so its fd comparison runs after the afterAll below has settled.
expectNoFdLeak();
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ivshmem-server-test-'));
});
afterEach(() => runNewestFirst(cleanups, cleanupFailures));
afterAll(async () => {
  await tick(50);
  rmSync(dir, { recursive: true, force: true });
  expect(readdirSync('/dev/shm').filter((f) => f.startsWith(`ivshmem-test-server-${process.pid}-`))).toEqual([]);
  expect(cleanupFailures, 'cleanup errors').toEqual([]);
});

describe('ivshmem server', () => {
  it("sends QEMU's connect sequence, in QEMU's order", async () => {
    const server = startServer(2);
    const a = UnixSocket.connect(server.socketPath);
    cleanups.push(() => a.close());
    expect(await drainRaw(a, 5)).toEqual([
      [0, false],
      [0, false],
      [-1, true],
      [0, true],
      [0, true],
    ]);
    const b = UnixSocket.connect(server.socketPath);
    cleanups.push(() => b.close());
    // b: version, id, shm, then peer 0's vectors, then its own.
    expect(await drainRaw(b, 7)).toEqual([
      [0, false],
      [1, false],
      [-1, true],
      [0, true],
      [0, true],
      [1, true],
      [1, true],
    ]);
    // a hears of b: its id with each vector's eventfd; then of b's leave: its id alone.
    expect(await drainRaw(a, 2)).toEqual([
      [1, true],
      [1, true],
    ]);
    b.close();
    expect(await drainRaw(a, 1)).toEqual([[1, false]]);
    expect(server.peerIds).toEqual([0]);
  });

  it("hands out ids round-robin, as QEMU's server does", async () => {
    const server = startServer(1);
    const ids: number[] = [];
    server.on('join', (id) => ids.push(id));
    const a = UnixSocket.connect(server.socketPath);
    await until(() => ids.length === 1, 'ids.length === 1');
    const b = UnixSocket.connect(server.socketPath);
    await until(() => ids.length === 2, 'ids.length === 2');
    a.close();
    await until(() => server.peerIds.length === 1, 'server.peerIds.length === 1');
    const c = UnixSocket.connect(server.socketPath);
    await until(() => ids.length === 3, 'ids.length === 3');
    expect(ids).toEqual([0, 1, 2]); // not 0 again: a reconnecting master cannot take back id 0
    b.close();
    c.close();
  });

  it('lets two devices ring each other on every vector, with memory shared', async () => {
    const server = startServer(3, 1 << 16);
    const a = await joinDevice(server, 3);
    const b = await joinDevice(server, 3);
    expect([a.device.id, b.device.id]).toEqual([0, 1]);
    expect([a.device.mmioRead(0, 8, 4), b.device.mmioRead(0, 8, 4)]).toEqual([0, 1]);
    expect(b.device.bars.at(-1)?.size).toBe(1 << 16);
    await until(() => a.device.peerVectors(1) === 3, 'a.device.peerVectors(1) === 3');
    for (let v = 0; v < 3; v++) {
      a.device.mmioWrite(0, 0x0c, 4, (1 << 16) | v);
      await until(() => b.msi.length === v + 1, 'b.msi.length === v + 1');
      b.device.mmioWrite(0, 0x0c, 4, (0 << 16) | v);
      await until(() => a.msi.length === v + 1, 'a.msi.length === v + 1');
    }
    expect(b.msi.map((m) => m.vector)).toEqual([0, 1, 2]);
    expect(a.msi.map((m) => m.data)).toEqual([0x40, 0x41, 0x42]);
    new Uint8Array(a.device.sharedMemory.buffer)[1234] = 0x5a;
    expect(b.device.mmioRead(2, 1234, 1)).toBe(0x5a);
  });

  it('routes a doorbell to the device itself, and drops ones to peers that left', async () => {
    const server = startServer(1);
    const a = await joinDevice(server, 1);
    const b = await joinDevice(server, 1);
    a.device.mmioWrite(0, 0x0c, 4, 0 << 16);
    await until(() => a.msi.length === 1, 'a.msi.length === 1');
    await until(() => a.device.peerVectors(1) === 1, 'a.device.peerVectors(1) === 1');
    b.device.close();
    await until(() => a.device.peerVectors(1) === 0, 'a.device.peerVectors(1) === 0');
    a.device.mmioWrite(0, 0x0c, 4, 1 << 16);
    expect(a.device.counters().doorbellsDropped.noPeer).toBe(1);
  });

  it('keeps serving through connect/close storms, garbage, half-open and stalled clients', async () => {
    const server = startServer(2, 1 << 16, { stallTimeoutMs: 200 });
    const leaves: string[] = [];
    server.on('leave', (_id, reason) => leaves.push(reason));
    const a = await joinDevice(server, 2);
    for (let i = 0; i < 50; i++) UnixSocket.connect(server.socketPath).close();
    const garbage = UnixSocket.connect(server.socketPath);
    garbage.sendRaw(new Uint8Array([1, 2, 3]));
    const halfOpen = UnixSocket.connect(server.socketPath);
    native().shutdown(halfOpen.fd);
    await until(() => server.peerIds.length === 1, 'server.peerIds.length === 1');
    garbage.close();
    halfOpen.close();
    // A client that never reads: fill its socket by announcing many joins.
    const stalled = UnixSocket.connect(server.socketPath);
    const churn: UnixSocket[] = [];
    while (churn.length < 300) {
      try {
        churn.push(UnixSocket.connect(server.socketPath));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
        await tick(1); // the backlog is full until the server (on this thread) accepts
      }
    }
    await until(
      () => !server.peerIds.includes(52) || leaves.some((r) => r.includes('stopped reading')),
      'a stalled reader dropped',
      4000,
    );
    for (const c of churn) c.close();
    stalled.close();
    await until(() => server.peerIds.length === 1, 'server.peerIds.length === 1', 4000);
    // Still serving: a new device joins and rings the first one.
    const b = await joinDevice(server, 2);
    b.device.mmioWrite(0, 0x0c, 4, (a.device.id << 16) | 1);
    await until(() => a.msi.length === 1, 'a.msi.length === 1');
    expect(leaves.length).toBeGreaterThanOrEqual(2); // at least the garbage and half-open clients
  });

  it('refuses a master that is not first, and starts a device with the id and memory it assigned', async () => {
    const server = startServer(1, 1 << 20);
    await joinDevice(server, 1);
    await expect(
      IvshmemDevice.create({
        mode: 'doorbell',
        server: server.socketPath,
        master: 'on',
        transport: { setIrqLevel() {}, sendMsi() {} },
      }),
    ).rejects.toMatchObject({ code: 'ERR_IVSHMEM_MASTER' });
    const auto = await IvshmemDevice.create({
      mode: 'doorbell',
      server: server.socketPath,
      master: 'auto',
      transport: { setIrqLevel() {}, sendMsi() {} },
    });
    cleanups.push(() => auto.close());
    expect(auto.master).toBe(false);
    expect(auto.migrationBlocker).toContain('peer mode');
  });

  it('unlinks its socket and shm object on close, telling every peer', async () => {
    const server = startServer(1);
    const a = await joinDevice(server, 1);
    const name = readdirSync('/dev/shm').filter((f) => f.startsWith(`ivshmem-test-server-${process.pid}-`));
    expect(name.length).toBe(1);
    server.close();
    expect(readdirSync(dir)).not.toContain(server.socketPath.split('/').pop());
    expect(readdirSync('/dev/shm')).not.toContain(name[0]);
    await until(() => a.device.connection?.serverGone === true, 'a.device.connection?.serverGone === true');
    // QEMU keeps working with the fds it has: the device still rings itself.
    a.device.mmioWrite(0, 0x0c, 4, a.device.id << 16);
    await until(() => a.msi.length === 1, 'a.msi.length === 1');
  });
});

describe('a device whose embedder waits on its vectors', () => {
  it("exposes its own vectors' eventfds and fires only when told (vectorWait: manual)", async () => {
    const server = startServer(2);
    const a = await joinDevice(server, 2);
    const msi: Msi[] = [];
    const b = await IvshmemDevice.create({
      mode: 'doorbell',
      vectors: 2,
      server: server.socketPath,
      vectorWait: 'manual',
      transport: { setIrqLevel() {}, sendMsi: (address, data, vector) => msi.push({ address, data, vector }) },
    });
    cleanups.push(() => b.close());
    enableMsix(b);
    b.mmioWrite(1, 16 + 12, 4, 0); // vector 1 unmasked
    await until(
      () => b.ownVectorFds.length === 2 && a.device.peerVectors(b.id) === 2,
      'b.ownVectorFds.length === 2 && a.device.peerVectors(b.id) === 2',
    );
    a.device.mmioWrite(0, 0x0c, 4, (b.id << 16) | 1);
    const { createWaiter } = await import('../../src/os/waiter.js');
    const waiter = createWaiter('blocking', b.ownVectorFds);
    const index = waiter.waitOnce(2000);
    waiter.close();
    expect([index, msi.length]).toEqual([1, 0]); // nothing fires by itself
    b.fireVector(index);
    expect(msi.map((m) => m.vector)).toEqual([1]);
  });
});

describe('legacy protocol and INTx with a server', () => {
  it('joins a pre-2.5 server (no version message) in legacy mode, and only then', async () => {
    const server = startServer(1, 1 << 16, { legacy: true });
    const irq: number[] = [];
    const device = await IvshmemDevice.create({
      mode: 'intx',
      server: server.socketPath,
      legacy: true,
      transport: { setIrqLevel: (l) => irq.push(l), sendMsi() {} },
    });
    cleanups.push(() => device.close());
    expect(device.id).toBe(0);
    // The seed's INTx path: our own vector sets IntrStatus bit 0; the pin follows the mask.
    device.mmioWrite(0, 0x00, 4, 1);
    device.mmioWrite(0, 0x0c, 4, 0 << 16);
    await until(() => irq.length === 1, 'irq.length === 1');
    expect(device.mmioRead(0, 0x04, 4)).toBe(1);
    expect(irq).toEqual([1, 0]);
    await expect(
      IvshmemDevice.create({
        mode: 'doorbell',
        server: server.socketPath,
        setupTimeoutMs: 500,
        transport: { setIrqLevel() {}, sendMsi() {} },
      }),
    ).rejects.toMatchObject({ code: 'ERR_IVSHMEM_PROTOCOL_VERSION' }); // its id 1 read as a version
  });
});

describe('device against a broken server', () => {
  it.each([
    ['a wrong version', [[1n, false]], 'ERR_IVSHMEM_PROTOCOL_VERSION'],
    [
      'EOF during setup',
      [
        [0n, false],
        [3n, false],
      ],
      'ERR_IVSHMEM_PROTOCOL_EOF',
    ],
    ['a silent server', [], 'ERR_IVSHMEM_PROTOCOL_TIMEOUT'],
    [
      'an shm message without fd',
      [
        [0n, false],
        [3n, false],
        [-1n, false],
      ],
      'ERR_IVSHMEM_PROTOCOL_SHM',
    ],
    [
      'too many vectors for a peer',
      [
        [0n, false],
        [3n, false],
        [4n, true],
        [4n, true],
      ],
      'ERR_IVSHMEM_TOO_MANY_VECTORS',
    ],
  ] as [string, [bigint, boolean][], string][])('fails with %s, leaking nothing', async (name, script, code) => {
    const before = openFdCount();
    const { UnixListener } = await import('../../src/os/unix-socket.js');
    const listener = UnixListener.listen(socketPath());
    const pending = IvshmemDevice.create({
      mode: 'doorbell',
      vectors: 1,
      server: listener.path,
      setupTimeoutMs: 300,
      transport: { setIrqLevel() {}, sendMsi() {} },
    });
    let conn: UnixSocket | null = null;
    await until(() => (conn = listener.accept()) !== null, 'the fake server accepted the device');
    const sender = conn as unknown as UnixSocket;
    const eventfd = native().eventfdCreate();
    for (const [value, withFd] of script) sender.send(value, withFd ? eventfd : -1);
    if (name === 'EOF during setup') sender.close();
    await expect(pending).rejects.toMatchObject({ code });
    sender.close();
    listener.close();
    native().close(eventfd);
    await tick(10);
    expect(openFdCount()).toBe(before);
  });
});

describe('server observability', () => {
  it('publishes joins and leaves on diagnostics channels and counts them in stats()', async () => {
    const { subscribe, unsubscribe } = await import('node:diagnostics_channel');
    const { JOIN_CHANNEL, LEAVE_CHANNEL, REFUSE_CHANNEL } = await import('../../src/server/server-events.js');
    const seen: [string, unknown][] = [];
    const on = (name: string) => (message: unknown) => seen.push([name, message]);
    const handlers = [JOIN_CHANNEL, LEAVE_CHANNEL, REFUSE_CHANNEL].map((name) => [name, on(name)] as const);
    for (const [name, h] of handlers) subscribe(name, h);
    cleanups.push(() => {
      for (const [name, h] of handlers) unsubscribe(name, h);
    });
    const server = startServer(1);
    const other = startServer(1); // another server's events carry its own socket path
    const a = UnixSocket.connect(server.socketPath);
    const b = UnixSocket.connect(server.socketPath);
    const c = UnixSocket.connect(other.socketPath);
    cleanups.push(
      () => a.close(),
      () => b.close(),
      () => c.close(),
    );
    await until(
      () => server.peerIds.length === 2 && other.peerIds.length === 1,
      'server.peerIds.length === 2 && other.peerIds.length === 1',
    );
    a.sendRaw(new Uint8Array([1])); // a talks: dropped
    await until(() => server.peerIds.length === 1, 'server.peerIds.length === 1');
    const mine = seen.filter(([, m]) => (m as { socketPath: string }).socketPath === server.socketPath);
    expect(mine).toEqual([
      ['ivshmem:server:join', { socketPath: server.socketPath, id: 0, peers: 1 }],
      ['ivshmem:server:join', { socketPath: server.socketPath, id: 1, peers: 2 }],
      [
        'ivshmem:server:leave',
        { socketPath: server.socketPath, id: 0, reason: 'the client sent data or hung up', peers: 1 },
      ],
    ]);
    expect(seen.filter(([, m]) => (m as { socketPath: string }).socketPath === other.socketPath).length).toBe(1);
    // b read its setup (version, id, shm, a's vector, its own) and a's leave.
    await drainRaw(b, 6);
    const stats = server.stats();
    expect(stats).toEqual({
      peers: 1,
      joins: 2,
      leaves: 1,
      setupFailures: 0,
      refusals: {},
      messagesSent: 4 + 1 + 5 + 1, // a's setup (4) and b's join; b's setup (5) and a's leave
      slowReaderDrops: 0,
      messagesQueued: 0,
      bytesQueued: 0,
      peakQueue: 0,
    });
  });
});
