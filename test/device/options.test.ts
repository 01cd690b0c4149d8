// Invalid options are refused with coded errors before anything is built.
import { describe, expect, it } from 'vitest';
import { IvshmemDevice } from '../../src/device/device.js';
import type { IvshmemDeviceOptions } from '../../src/device/options.js';

const transport = { setIrqLevel() {}, sendMsi() {} };
const base = (extra: Partial<IvshmemDeviceOptions>): IvshmemDeviceOptions =>
  ({ memory: new ArrayBuffer(4096), transport, ...extra }) as IvshmemDeviceOptions;

describe('device options', () => {
  const refusals: [string, Partial<IvshmemDeviceOptions>, string][] = [
    ['unknown mode', { mode: 'msi' as never }, 'ERR_IVSHMEM_INVALID_MODE'],
    ['0 vectors', { mode: 'doorbell', vectors: 0 }, 'ERR_IVSHMEM_INVALID_VECTORS'],
    ['2049 vectors', { mode: 'doorbell', vectors: 2049 }, 'ERR_IVSHMEM_INVALID_VECTORS'],
    ['fractional vectors', { mode: 'intx', vectors: 1.5 }, 'ERR_IVSHMEM_INVALID_VECTORS'],
    ['vectors on plain', { mode: 'plain', vectors: 1 }, 'ERR_IVSHMEM_INVALID_OPTION'],
    ['size not a power of two', { size: 3000 }, 'ERR_IVSHMEM_INVALID_SIZE'],
    ['size 0', { size: 0 }, 'ERR_IVSHMEM_INVALID_SIZE'],
    ['size beyond the memory', { size: 8192 }, 'ERR_IVSHMEM_INVALID_SIZE'],
    ['memory not a power of two', { memory: new ArrayBuffer(3000) }, 'ERR_IVSHMEM_INVALID_SIZE'],
    ['empty memory', { memory: new ArrayBuffer(0) }, 'ERR_IVSHMEM_INVALID_SIZE'],
    ['memory missing', { memory: undefined as never }, 'ERR_IVSHMEM_INVALID_OPTION'],
    ['transport missing', { transport: undefined as never }, 'ERR_IVSHMEM_INVALID_OPTION'],
    ['transport incomplete', { transport: { setIrqLevel() {} } as never }, 'ERR_IVSHMEM_INVALID_OPTION'],
    ['id out of range', { mode: 'doorbell', id: 65536 }, 'ERR_IVSHMEM_INVALID_PEER'],
    ['id on plain', { mode: 'plain', id: 1 }, 'ERR_IVSHMEM_INVALID_PEER'],
    ['master on with id 1', { mode: 'doorbell', id: 1, master: 'on' }, 'ERR_IVSHMEM_MASTER'],
    ['master not on/off/auto', { master: 'yes' as never }, 'ERR_IVSHMEM_INVALID_OPTION'],
    ['use64 off outside intx', { mode: 'doorbell', use64: false }, 'ERR_IVSHMEM_INVALID_OPTION'],
    ['unknown core', { core: 'asm' as never }, 'ERR_IVSHMEM_INVALID_OPTION'],
    ['doorbell sink without ring', { doorbell: {} as never }, 'ERR_IVSHMEM_INVALID_OPTION'],
  ];

  it.each(refusals)('refuses %s', async (_name, extra, code) => {
    await expect(IvshmemDevice.create(base(extra))).rejects.toMatchObject({ code, name: 'IvshmemError' });
  });

  it('explains a refusal in words a person understands', async () => {
    await expect(IvshmemDevice.create(base({ size: 3000 }))).rejects.toThrow('size 3000 is not a power of two');
  });

  it('accepts the extremes', async () => {
    const d = await IvshmemDevice.create(base({ mode: 'doorbell', vectors: 2048, id: 65535 }));
    expect(d.bars.map((b) => b.size)).toEqual([256, 65536, 4096]);
    expect(d.mmioRead(0, 8, 4)).toBe(65535);
    const small = await IvshmemDevice.create(base({ mode: 'intx', use64: false, memory: new ArrayBuffer(16) }));
    expect(small.bars.at(-1)).toEqual({ index: 2, size: 16, type: 'mem32', prefetchable: false });
  });

  it('needs a doorbell sink before routes can be connected', async () => {
    const d = await IvshmemDevice.create(base({ mode: 'doorbell' }));
    expect(() => d.connectPeerVector(1, 3)).toThrow(expect.objectContaining({ code: 'ERR_IVSHMEM_INVALID_OPTION' }));
  });
});
