// Handing a device over to another process (a monitor upgrading or restarting itself): the
// source stops, the destination takes its server connection, memory and state as they were, and
// neither the server nor the peers notice — same id, no leave, no join, doorbells both ways, a
// pending MSI-X vector still pending and delivered on unmask in the new process.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IvshmemClient } from '../../src/client/ivshmem-client.js';
import { IvshmemDevice } from '../../src/device/device.js';
import { IvshmemServer } from '../../src/server/ivshmem-server.js';
import { deviceBundle } from '../support/device-bundle.js';
import { enableMsix, programVector } from '../support/device-harness.js';
import { expectNoFdLeak } from '../support/fd-leaks.js';
import { Inbox } from '../support/inbox.js';
import { until } from '../support/until.js';

const CHILD = fileURLToPath(new URL('../support/handover-child.mjs', import.meta.url));

describe('device hand-over to another process', () => {
  expectNoFdLeak(() => deviceBundle()); // esbuild's service stays for the test process
  let dir = '';
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'ivshmem-device-handover-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('the new process keeps the id, the peers, the memory and a pending vector; the server sees nothing', async () => {
    const server = IvshmemServer.start({
      socketPath: join(dir, 's.sock'),
      memory: { shm: `ivshmem-handover-${process.pid}` },
      size: 0x10000,
      vectors: 2,
    });
    const serverEvents: string[] = [];
    server.on('join', (id) => serverEvents.push(`join ${id}`));
    server.on('leave', (id) => serverEvents.push(`leave ${id}`));
    const peer = await IvshmemClient.connect(server.socketPath, { vectors: 2 });
    const peerEvents: string[] = [];
    const peerInterrupts: number[] = [];
    peer.on('join', (id) => peerEvents.push(`join ${id}`));
    peer.on('leave', (id) => peerEvents.push(`leave ${id}`));
    peer.on('interrupt', (vector) => peerInterrupts.push(vector));
    const msis: number[] = [];
    const source = await IvshmemDevice.create({
      mode: 'doorbell',
      vectors: 2,
      server: server.socketPath,
      transport: { setIrqLevel() {}, sendMsi: (_a, _d, v) => msis.push(v) },
    });
    let child: ReturnType<typeof spawn> | undefined;
    let childClosed: Promise<unknown> = Promise.resolve();
    try {
      await until(
        () => source.peerVectors(peer.id) === 2 && peer.peers.has(source.id),
        'source and peer know each other',
      );
      // The guest of the source: MSI-X on, vector 0 unmasked, vector 1 masked; a word in BAR2.
      enableMsix(source);
      programVector(source, 0, 0xfee00000, 0x40, false);
      programVector(source, 1, 0xfee00000, 0x41, true);
      source.mmioWrite(2, 0x100, 4, 0xc0ffee);
      peer.ring(source.id, 1);
      await until(() => source.vectorCounters()[1].pended === 1, 'vector 1 pending at the source');
      expect(msis).toEqual([]);
      const joinsBefore = [...serverEvents];
      const peerBefore = [...peerEvents];

      const handover = source.handOver();
      expect(() => source.mmioRead(0, 8, 4), 'the source refuses guest accesses').toThrow(
        expect.objectContaining({ code: 'ERR_IVSHMEM_CLOSED' }),
      );
      const fds = handover.connection.fds;
      expect(fds.length, 'socket, memory, 2 own vectors, 2 of the peer').toBe(6);

      child = spawn(process.execPath, [CHILD, deviceBundle()], { stdio: ['ignore', 'ignore', 'pipe', 'ipc', ...fds] });
      childClosed = new Promise((resolve) => child!.once('close', resolve));
      let stderr = '';
      child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
      const inbox = new Inbox<Record<string, unknown>>({ name: 'child', context: () => stderr });
      child.on('message', inbox.push);
      const next = (type: string) => inbox.next(type);
      await next('started');
      // The child has its copies now: the source lets go of its own.
      source.close();
      child.send({
        op: 'adopt',
        description: handover.connection.description,
        fdCount: fds.length,
        state: [...handover.state],
        master: handover.master,
        vectors: 2,
      });
      const ready = await next('ready');
      expect(ready.id, 'same IVPosition').toBe(source.id);

      const read = async (bar: number, offset: number) => {
        child!.send({ op: 'read', bar, offset, size: 4 });
        return (await next('value')).value;
      };
      expect(await read(0, 8)).toBe(source.id);
      expect(await read(2, 0x100), 'the memory is the same object').toBe(0xc0ffee);
      expect(await read(1, 0x800), 'vector 1 still pending').toBe(2);

      // The peer rings vector 0 of the id it knows: the new process takes it.
      peer.ring(source.id, 0);
      expect(await next('msi')).toMatchObject({ address: 0xfee00000, data: 0x40, vector: 0 });
      // Unmasking vector 1 in the new process delivers what was pending at the old one.
      child.send({ op: 'write', bar: 1, offset: 16 + 12, size: 4, value: 0 });
      await next('written');
      expect(await next('msi')).toMatchObject({ data: 0x41, vector: 1 });
      // And the new process rings the peer through the routes it inherited.
      child.send({ op: 'write', bar: 0, offset: 0x0c, size: 4, value: (peer.id << 16) | 1 });
      await next('written');
      await until(() => peerInterrupts.length === 1, 'the peer is rung by the new process');
      expect(peerInterrupts).toEqual([1]);

      expect(serverEvents, 'the server saw no leave and no join').toEqual(joinsBefore);
      expect(peerEvents, 'nor did the peer').toEqual(peerBefore);

      // When the new process goes, the server and the peer see that id leave, once.
      child.send({ op: 'stop' });
      await until(() => peerEvents.length === peerBefore.length + 1, 'the peer hears the leave');
      expect(peerEvents.slice(peerBefore.length)).toEqual([`leave ${source.id}`]);
      expect(serverEvents.slice(joinsBefore.length)).toEqual([`leave ${source.id}`]);
    } finally {
      if (child !== undefined) {
        // 'close' comes after the exit and after its stdio pipes are closed (the fd check counts them).
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        await Promise.race([childClosed, new Promise((r) => setTimeout(r, 5000))]);
      }
      source.close();
      peer.close();
      server.close();
    }
  });

  it('refuses a hand-over that does not match, closing every fd it was given', async () => {
    const server = IvshmemServer.start({
      socketPath: join(dir, 'r.sock'),
      memory: { shm: `ivshmem-handover-r-${process.pid}` },
      size: 4096,
      vectors: 1,
    });
    const transport = { setIrqLevel() {}, sendMsi() {} };
    const source = await IvshmemDevice.create({ mode: 'doorbell', vectors: 1, server: server.socketPath, transport });
    try {
      expect(() => source.handOver().connection.fds.length).not.toThrow();
      expect(() => source.handOver(), 'only once').toThrow(expect.objectContaining({ code: 'ERR_IVSHMEM_CLOSED' }));
      const plain = await IvshmemDevice.create({ memory: new ArrayBuffer(4096), transport });
      expect(() => plain.handOver()).toThrow(expect.objectContaining({ code: 'ERR_IVSHMEM_HANDOVER' }));
      plain.close();
      // In-process stand-ins for received fds: eventfds where the memory should be are refused.
      const { EventFd } = await import('../../src/os/eventfd.js');
      const bogus = [EventFd.create(), EventFd.create(), EventFd.create()].map((e) => e.release());
      const description = {
        format: 1 as const,
        path: server.socketPath,
        id: 3,
        vectors: 1,
        serverGone: true,
        own: 1,
        peers: [] as [number, number][],
      };
      await expect(
        IvshmemDevice.create({
          mode: 'doorbell',
          vectors: 1,
          transport,
          handover: { connection: { description, fds: bogus.slice(0, 2) }, state: new Uint8Array(), master: false },
        }),
      ).rejects.toMatchObject({ code: 'ERR_IVSHMEM_PROTOCOL_FD' });
      await expect(
        IvshmemDevice.create({
          mode: 'doorbell',
          vectors: 2,
          transport,
          handover: { connection: { description, fds: bogus.slice(2) }, state: new Uint8Array(), master: false },
        }),
      ).rejects.toMatchObject({ code: 'ERR_IVSHMEM_HANDOVER' });
      // Descriptions that do not add up, and options that contradict a hand-over: refused, every fd closed
      // (the suite's fd count fails otherwise).
      const fresh = (n: number) => Array.from({ length: n }, () => EventFd.create().release());
      const twice = {
        ...description,
        own: 0,
        peers: [
          [5, 1],
          [5, 1],
        ] as [number, number][],
      };
      const fractional = { ...description, own: 0.5 };
      for (const [d, n] of [
        [twice, 4],
        [fractional, 3],
        [{ ...description, peers: 'none' }, 3],
      ] as const) {
        await expect(
          IvshmemDevice.create({
            mode: 'doorbell',
            vectors: 1,
            transport,
            handover: {
              connection: { description: d as typeof description, fds: fresh(n) },
              state: new Uint8Array(),
              master: false,
            },
          }),
        ).rejects.toMatchObject({ code: 'ERR_IVSHMEM_HANDOVER' });
      }
      await expect(
        IvshmemDevice.create({
          mode: 'doorbell',
          vectors: 1,
          transport,
          server: server.socketPath,
          handover: { connection: { description, fds: fresh(3) }, state: new Uint8Array(), master: false },
        }),
      ).rejects.toMatchObject({ code: 'ERR_IVSHMEM_INVALID_OPTION' });
    } finally {
      source.close();
      server.close();
    }
  });
});
