// A VMM transport that throws while the device delivers an interrupt: from the event loop (a
// peer's doorbell arriving on our eventfd) there is no caller to catch it, and before this it
// ended the process. Now the device reports it — 'error' with code ERR_IVSHMEM_TRANSPORT and the
// transport's exception as cause, counters().transportErrors, the ivshmem:device:error channel, a
// one-time warning when nobody listens — and goes on delivering the next interrupts.
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { IvshmemClient } from '../../src/client/ivshmem-client.js';
import { DEVICE_ERROR_CHANNEL } from '../../src/device/events.js';
import type { DeviceErrorEvent } from '../../src/device/events.js';
import { IvshmemDevice } from '../../src/device/device.js';
import { IvshmemServer } from '../../src/server/ivshmem-server.js';
import { enableMsix, programVector } from '../support/device-harness.js';
import { until } from '../support/until.js';

const dir = mkdtempSync(join(tmpdir(), 'ivshmem-transport-'));
let n = 0;
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('a transport that throws', () => {
  it('from the event loop: the device emits error, counts it, publishes it, and delivers the next interrupt', async () => {
    const server = IvshmemServer.start({
      socketPath: join(dir, `s${n++}.sock`),
      memory: { shm: `ivshmem-test-transport-${process.pid}-${n++}` },
      size: 4096,
      vectors: 1,
    });
    const published: DeviceErrorEvent[] = [];
    const onPublish = (e: unknown) => published.push(e as DeviceErrorEvent);
    subscribe(DEVICE_ERROR_CHANNEL, onPublish);
    let throws = true;
    const delivered: number[] = [];
    const device = await IvshmemDevice.create({
      mode: 'doorbell',
      vectors: 1,
      server: server.socketPath,
      transport: {
        setIrqLevel() {},
        sendMsi: (_address, data) => {
          if (throws) throw new RangeError('the VMM has no vCPU for this MSI');
          delivered.push(data);
        },
      },
    });
    const client = await IvshmemClient.connect(server.socketPath, { vectors: 1 });
    try {
      enableMsix(device);
      programVector(device, 0, 0xfee00000, 0x41, false);
      const errors: Error[] = [];
      device.on('error', (err) => errors.push(err));
      await until(() => client.peers.has(device.id), 'the client hearing of the device');
      client.ring(device.id, 0);
      await until(() => errors.length === 1, 'the error event');
      expect(errors[0]).toMatchObject({
        code: 'ERR_IVSHMEM_TRANSPORT',
        message: expect.stringContaining('sendMsi() threw: the VMM has no vCPU'),
      });
      expect(errors[0].cause).toBeInstanceOf(RangeError);
      expect(device.counters().transportErrors).toBe(1);
      expect(published).toEqual([
        expect.objectContaining({ id: device.id, code: 'ERR_IVSHMEM_TRANSPORT', socketPath: server.socketPath }),
      ]);
      throws = false;
      client.ring(device.id, 0);
      await until(() => delivered.length === 1, 'the next interrupt delivered');
      expect(delivered).toEqual([0x41]);
      expect(device.counters().transportErrors).toBe(1);
    } finally {
      unsubscribe(DEVICE_ERROR_CHANNEL, onPublish);
      client.close();
      device.close();
      server.close();
    }
  });

  it('with nobody listening for error: one warning, every failure counted, no exception to the guest access', async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    try {
      const device = await IvshmemDevice.create({
        mode: 'intx',
        vectors: 1,
        memory: new ArrayBuffer(4096),
        transport: {
          setIrqLevel: () => {
            throw new Error('no interrupt controller');
          },
          sendMsi() {},
        },
      });
      device.configWrite(0x04, 2, 0x0002); // memory decode; INTx stays enabled
      // IntrMask then IntrStatus: the line rises, then falls, each a setIrqLevel that throws.
      expect(() => {
        device.mmioWrite(0, 0x00, 4, 1);
        device.mmioWrite(0, 0x04, 4, 1);
        device.mmioWrite(0, 0x04, 4, 0);
      }).not.toThrow();
      expect(device.mmioRead(0, 0x04, 4)).toBe(0);
      expect(device.counters().transportErrors).toBe(2);
      await until(() => warnings.length > 0, 'the warning');
      await new Promise((r) => setImmediate(r));
      expect(warnings.filter((w) => (w as { code?: string }).code === 'ERR_IVSHMEM_TRANSPORT')).toHaveLength(1);
      expect(warnings[0].message).toContain('setIrqLevel() threw: no interrupt controller');
      device.close();
    } finally {
      process.off('warning', onWarning);
    }
  });
});
