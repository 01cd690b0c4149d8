// A device joined to a server reports its life on diagnostics channels: its join (id, vectors,
// the peers already there), each peer vector announced and each peer that leaves, the server's
// bad messages, and the end of the connection — in the order they happened.
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IvshmemClient } from '../../src/client/ivshmem-client.js';
import { IvshmemDevice } from '../../src/device/device.js';
import {
  DEVICE_CLOSE_CHANNEL,
  DEVICE_ERROR_CHANNEL,
  DEVICE_JOIN_CHANNEL,
  DEVICE_PEER_CHANNEL,
} from '../../src/device/events.js';
import { IvshmemServer } from '../../src/server/ivshmem-server.js';
import { expectNoFdLeak } from '../support/fd-leaks.js';
import { until } from '../support/until.js';

describe('device diagnostics channels', () => {
  expectNoFdLeak();
  let dir = '';
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'ivshmem-device-events-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('publishes join, peer vectors, peer leaves and the close, in order', async () => {
    const events: [string, Record<string, unknown>][] = [];
    const names = [DEVICE_JOIN_CHANNEL, DEVICE_PEER_CHANNEL, DEVICE_ERROR_CHANNEL, DEVICE_CLOSE_CHANNEL];
    const listeners = names.map((name) => {
      const l = (message: unknown) => events.push([name, message as Record<string, unknown>]);
      subscribe(name, l);
      return [name, l] as const;
    });
    const server = IvshmemServer.start({
      socketPath: join(dir, 's.sock'),
      memory: { shm: `ivshmem-device-events-${process.pid}` },
      size: 4096,
      vectors: 2,
    });
    let device: IvshmemDevice | undefined;
    try {
      const first = await IvshmemClient.connect(server.socketPath, { vectors: 2 });
      device = await IvshmemDevice.create({
        mode: 'doorbell',
        vectors: 2,
        server: server.socketPath,
        transport: { setIrqLevel() {}, sendMsi() {} },
      });
      const second = await IvshmemClient.connect(server.socketPath, { vectors: 2 });
      await until(() => device!.peerVectors(second.id) === 2, 'the device hears of the second client');
      second.close();
      await until(() => device!.peerVectors(second.id) === 0, 'the device hears it leave');
      first.close();
      await until(() => device!.peerVectors(first.id) === 0, 'the first leaves too');
      server.close();
      await until(() => events.some(([n]) => n === DEVICE_CLOSE_CHANNEL), 'the close event');

      const id = device.id;
      const socketPath = server.socketPath;
      expect(events).toEqual([
        [DEVICE_JOIN_CHANNEL, { socketPath, id, vectors: 2, peers: [first.id] }],
        [DEVICE_PEER_CHANNEL, { socketPath, id, peer: second.id, change: 'vector', vectors: 1 }],
        [DEVICE_PEER_CHANNEL, { socketPath, id, peer: second.id, change: 'vector', vectors: 2 }],
        [DEVICE_PEER_CHANNEL, { socketPath, id, peer: second.id, change: 'left', vectors: 2 }],
        [DEVICE_PEER_CHANNEL, { socketPath, id, peer: first.id, change: 'left', vectors: 2 }],
        [DEVICE_CLOSE_CHANNEL, { socketPath, id, reason: expect.any(String) }],
      ]);
    } finally {
      for (const [name, l] of listeners) unsubscribe(name, l);
      device?.close();
      server.close();
    }
  });

  it("passes requireSealedMemory on: a device refuses our server's POSIX shm object, which cannot be sealed", async () => {
    const server = IvshmemServer.start({
      socketPath: join(dir, 'sealed.sock'),
      memory: { shm: `ivshmem-device-sealed-${process.pid}` },
      size: 4096,
      vectors: 1,
    });
    try {
      const transport = { setIrqLevel() {}, sendMsi() {} };
      await expect(
        IvshmemDevice.create({
          mode: 'doorbell',
          vectors: 1,
          server: server.socketPath,
          transport,
          requireSealedMemory: true,
        }),
      ).rejects.toMatchObject({ code: 'ERR_IVSHMEM_PROTOCOL_SHM' });
      const relaxed = await IvshmemDevice.create({
        mode: 'doorbell',
        vectors: 1,
        server: server.socketPath,
        transport,
      });
      relaxed.close();
    } finally {
      server.close();
    }
  });
});
