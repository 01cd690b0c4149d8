// The transport hooks through which a monitor's in-kernel fast paths follow a server-joined device
// (the KVM monitor's ioeventfds and irqfds use nothing else): every doorbell route announced with
// its Doorbell datamatch and withdrawn while its eventfd is still open; with vectorWait 'manual',
// each own vector's eventfd, and whether MSI-X would deliver it now, following the guest's MSI-X
// programming step by step. Real server, real peers, real eventfds.
import { fstatSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { IvshmemClient } from '../../src/client/ivshmem-client.js';
import { IvshmemDevice } from '../../src/device/device.js';
import type { IvshmemDeviceOptions } from '../../src/device/options.js';
import type { BarAddress, IoEventFd, MsiMessage, VmmTransport } from '../../src/device/transport.js';
import { enableMsix, programVector } from '../support/device-harness.js';
import { serverSuite } from '../support/server-suite.js';
import { until } from '../support/until.js';

const isOpen = (fd: number) => {
  try {
    fstatSync(fd);
    return true;
  } catch {
    return false;
  }
};

/** A transport that writes down every hook call, and whether the fd it names was still open then. */
function recorder() {
  const calls: string[] = [];
  const closedAtCall: string[] = [];
  const note = (call: string, fd: number) => {
    calls.push(call);
    if (fd >= 0 && !isOpen(fd)) closedAtCall.push(call);
  };
  const transport: VmmTransport = {
    setIrqLevel() {},
    sendMsi() {},
    barMapped: (bar: number, address: BarAddress) =>
      calls.push(`bar ${bar} ${address === null ? 'null' : address.toString(16)}`),
    addIoEventFd: (r: IoEventFd) =>
      note(`add ${r.peer}:${r.vector} ${r.datamatch.toString(16)} @${r.bar}+${r.offset}/${r.size}`, r.fd),
    removeIoEventFd: (r: IoEventFd) => note(`remove ${r.peer}:${r.vector}`, r.fd),
    vectorFd: (vector: number, fd: number) => note(`fd ${vector} ${fd < 0 ? 'gone' : 'on'}`, fd),
    vectorDeliverable: (vector: number, fd: number, m: MsiMessage | null) =>
      note(`deliverable ${vector} ${m === null ? 'null' : `${m.address.toString(16)}/${m.data.toString(16)}`}`, fd),
  };
  return { calls, closedAtCall, transport };
}

describe('transport hooks for in-kernel fast paths', () => {
  const { cleanups, startServer } = serverSuite({ name: 'route-hooks', size: 4096, vectors: 2 });

  async function join(transport: VmmTransport, options: Partial<IvshmemDeviceOptions> = {}) {
    const server = startServer();
    const first = await IvshmemClient.connect(server.socketPath, { vectors: 2 });
    cleanups.push(() => first.close());
    const device = await IvshmemDevice.create({
      mode: 'doorbell',
      vectors: 2,
      server: server.socketPath,
      transport,
      ...options,
    });
    cleanups.push(() => device.close());
    return { server, first, device };
  }

  it('announces every doorbell route with its datamatch, and withdraws each while its eventfd is open', async () => {
    const r = recorder();
    const { server, first, device } = await join(r.transport);
    const me = device.id;
    const hex = (peer: number, vector: number) => ((peer << 16) | vector).toString(16);
    expect(r.calls).toEqual([
      `add ${first.id}:0 ${hex(first.id, 0)} @0+12/4`,
      `add ${first.id}:1 ${hex(first.id, 1)} @0+12/4`,
      `add ${me}:0 ${hex(me, 0)} @0+12/4`,
      `add ${me}:1 ${hex(me, 1)} @0+12/4`,
    ]);
    r.calls.length = 0;

    const second = await IvshmemClient.connect(server.socketPath, { vectors: 2 });
    await until(() => device.peerVectors(second.id) === 2, 'the device hears of the second peer');
    expect(r.calls).toEqual([
      `add ${second.id}:0 ${hex(second.id, 0)} @0+12/4`,
      `add ${second.id}:1 ${hex(second.id, 1)} @0+12/4`,
    ]);
    r.calls.length = 0;
    second.close();
    await until(() => device.peerVectors(second.id) === 0, 'the device hears the second peer leave');
    expect(r.calls).toEqual([`remove ${second.id}:0`, `remove ${second.id}:1`]);
    r.calls.length = 0;

    device.configWrite(0x10, 4, 0xfebf0000);
    device.configWrite(0x04, 2, 0x0002);
    expect(r.calls, 'BARs 1 and 2 were never placed: they decode at 0').toEqual([
      'bar 0 febf0000',
      'bar 1 0',
      'bar 2 0',
    ]);
    r.calls.length = 0;
    device.close();
    expect(r.calls).toEqual([
      `remove ${first.id}:0`,
      `remove ${first.id}:1`,
      `remove ${me}:0`,
      `remove ${me}:1`,
      'bar 0 null',
      'bar 1 null',
      'bar 2 null',
    ]);
    expect(r.closedAtCall, 'hooks that named an fd already closed').toEqual([]);
    expect(device.released).toBe(true);
  });

  it("with vectorWait 'manual': each own vector's fd, and when MSI-X starts and stops delivering it", async () => {
    const r = recorder();
    const { device } = await join(r.transport, { vectorWait: 'manual' });
    expect(r.calls.filter((c) => !c.startsWith('add'))).toEqual(['fd 0 on', 'fd 1 on']);
    r.calls.length = 0;
    const deliverable = () => r.calls.splice(0).filter((c) => c.startsWith('deliverable'));

    enableMsix(device);
    expect(deliverable(), 'every entry starts masked').toEqual([]);
    programVector(device, 0, 0xfee00000, 0x41, false);
    expect(deliverable()).toEqual(['deliverable 0 fee00000/41']);
    device.mmioWrite(1, 8, 4, 0x42);
    expect(deliverable(), 'a new message is announced').toEqual(['deliverable 0 fee00000/42']);
    device.mmioWrite(1, 8, 4, 0x42);
    expect(deliverable(), 'the same message is not').toEqual([]);
    device.mmioWrite(1, 12, 4, 1);
    expect(deliverable(), 'entry masked').toEqual(['deliverable 0 null']);
    device.mmioWrite(1, 12, 4, 0);
    device.configWrite(0x43, 1, 0xc0);
    expect(deliverable(), 'unmasked, then the function masked').toEqual([
      'deliverable 0 fee00000/42',
      'deliverable 0 null',
    ]);
    device.configWrite(0x43, 1, 0x80);
    device.configWrite(0x04, 2, 0x0002);
    expect(deliverable(), 'function unmasked, then bus mastering off').toEqual([
      'deliverable 0 fee00000/42',
      'deliverable 0 null',
    ]);
    device.configWrite(0x04, 2, 0x0006);
    programVector(device, 1, 0xfee01000, 0x51, false);
    expect(deliverable()).toEqual(['deliverable 0 fee00000/42', 'deliverable 1 fee01000/51']);
    device.reset();
    expect(deliverable(), 'a reset disables MSI-X').toEqual(['deliverable 0 null', 'deliverable 1 null']);

    enableMsix(device);
    programVector(device, 1, 0xfee01000, 0x51, false);
    r.calls.length = 0;
    device.close();
    expect(r.calls.filter((c) => !c.startsWith('remove'))).toEqual([
      'fd 0 gone',
      'deliverable 1 null',
      'fd 1 gone',
      'bar 0 null',
      'bar 1 null',
      'bar 2 null',
    ]);
    expect(r.closedAtCall).toEqual([]);
  });

  it("with vectorWait 'loop' the device waits on its vectors itself: no fd and no deliverability is announced", async () => {
    const r = recorder();
    const { device } = await join(r.transport);
    enableMsix(device);
    programVector(device, 0, 0xfee00000, 0x41, false);
    expect(r.calls.filter((c) => !c.startsWith('add') && !c.startsWith('bar'))).toEqual([]);
  });

  it('a hook that throws is counted and reported as an error; the route still works through the device', async () => {
    const r = recorder();
    let throws = false;
    const transport: VmmTransport = {
      ...r.transport,
      addIoEventFd: (route) => {
        if (throws) throw new Error('KVM refused the ioeventfd');
        r.transport.addIoEventFd!(route);
      },
    };
    const server = startServer();
    const device = await IvshmemDevice.create({ mode: 'doorbell', vectors: 2, server: server.socketPath, transport });
    cleanups.push(() => device.close());
    const errors: Error[] = [];
    device.on('error', (err: Error) => errors.push(err));
    throws = true;
    const peer = await IvshmemClient.connect(server.socketPath, { vectors: 2 });
    cleanups.push(() => peer.close());
    const interrupts: number[] = [];
    peer.on('interrupt', (vector: number) => interrupts.push(vector));
    await until(() => device.peerVectors(peer.id) === 2, 'the device hears of the peer');
    expect(device.counters().transportErrors).toBe(2);
    expect(errors.map((e) => [(e as { code?: string }).code, (e.cause as Error).message])).toEqual([
      ['ERR_IVSHMEM_TRANSPORT', 'KVM refused the ioeventfd'],
      ['ERR_IVSHMEM_TRANSPORT', 'KVM refused the ioeventfd'],
    ]);
    device.mmioWrite(0, 0x0c, 4, (peer.id << 16) | 1);
    await until(() => interrupts.length === 1, 'the ring reaches the peer through the device');
    expect(interrupts).toEqual([1]);
  });
});
