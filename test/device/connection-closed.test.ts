// A caller may close a device's connection itself (device.connection.close(), or
// device.directory.close()) instead of the device. The device then lets go of its guest at once:
// its own watchers stop before the fds go, so a later ring neither fires a vector of a device that
// is gone (which used to end the process with an uncaught ERR_IVSHMEM_CLOSED) nor drains a new
// eventfd that happens to get the old fd number.
import { describe, expect, it } from 'vitest';
import { IvshmemClient } from '../../src/client/ivshmem-client.js';
import { IvshmemDevice } from '../../src/device/device.js';
import { EventFd } from '../../src/os/eventfd.js';
import { PeerDirectory } from '../../src/server/directory.js';
import { serverSuite } from '../support/server-suite.js';
import { until } from '../support/until.js';

const transport = { setIrqLevel() {}, sendMsi() {} };

describe("closing a device's connection from outside", () => {
  const { cleanups, startServer } = serverSuite({ name: 'connection-closed', size: 4096, vectors: 1 });

  it('server: the device is released, and a ring afterwards reaches nothing of it', async () => {
    const server = startServer();
    const device = await IvshmemDevice.create({ mode: 'doorbell', vectors: 1, server: server.socketPath, transport });
    cleanups.push(() => device.close());
    const peer = await IvshmemClient.connect(server.socketPath, { vectors: 1 });
    cleanups.push(() => peer.close());
    await until(() => peer.peers.has(device.id), 'the peer hears of the device');
    const oldFd = device.ownVectorFds[0];
    device.connection!.close();
    expect(device.released).toBe(true);
    expect(() => device.fireVector(0)).toThrow(expect.objectContaining({ code: 'ERR_IVSHMEM_CLOSED' }));
    // A new eventfd may take the old number; the peer still holds (and rings) the old file.
    const fresh = EventFd.create();
    cleanups.push(() => fresh.close());
    fresh.signal();
    peer.ring(device.id, 0);
    await new Promise((r) => setTimeout(r, 50));
    expect({ reused: fresh.fd === oldFd, pending: fresh.drain() }).toEqual({ reused: fresh.fd === oldFd, pending: 1 });
  });

  it('directory: the device is released, and a ring afterwards raises nothing', async () => {
    const directory = new PeerDirectory({ size: 4096, vectors: 1 });
    cleanups.push(() => directory.close());
    const a = await IvshmemDevice.create({ mode: 'doorbell', vectors: 1, directory: directory.connect(), transport });
    const b = await IvshmemDevice.create({ mode: 'doorbell', vectors: 1, directory: directory.connect(), transport });
    cleanups.push(
      () => a.close(),
      () => b.close(),
    );
    await until(() => b.peerVectors(a.id) === 1, 'b knows a');
    const rejections: unknown[] = [];
    const onRejection = (err: unknown) => rejections.push(err);
    process.on('unhandledRejection', onRejection);
    try {
      a.directory!.close();
      expect(a.released).toBe(true);
      b.mmioWrite(0, 0x0c, 4, (a.id << 16) | 0);
      await new Promise((r) => setTimeout(r, 50));
      expect(rejections).toEqual([]);
      expect(a.ownSignals!.take(0), 'the ring waits in the buffer, taken by nobody').toBe(1);
    } finally {
      process.off('unhandledRejection', onRejection);
    }
  });
});
