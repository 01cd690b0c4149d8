// PCI configuration space: identity and layout per mode, write masks, BAR sizing, a Linux-style
// probe, and the BAR mappings reported to the monitor. Expected bytes were read from QEMU 7.2.
import { describe, expect, it } from 'vitest';
import { CORE_VARIANTS, makeDevice } from '../support/device-harness.js';
import { probeFunction } from '../../src/device/pci/probe.js';
import type { IvshmemDevice } from '../../src/device/device.js';

const hexBytes = (text: string) =>
  text
    .trim()
    .split(/\s+/)
    .map((b) => parseInt(b, 16));
const dump = (d: IvshmemDevice, n = 0x50) => Array.from({ length: n }, (_, i) => d.configRead(i, 1));

const PLAIN = hexBytes(`
  f4 1a 10 11 00 00 00 00 01 00 00 05 00 00 00 00  00 00 00 00 00 00 00 00 0c 00 00 00 00 00 00 00
  00 00 00 00 00 00 00 00 00 00 00 00 f4 1a 00 11  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00`);
const DOORBELL_2 = hexBytes(`
  f4 1a 10 11 00 00 10 00 01 00 00 05 00 00 00 00  00 00 00 00 00 00 00 00 0c 00 00 00 00 00 00 00
  00 00 00 00 00 00 00 00 00 00 00 00 f4 1a 00 11  00 00 00 00 40 00 00 00 00 00 00 00 00 00 00 00
  11 00 01 00 01 00 00 00 01 08 00 00 00 00 00 00`);

describe.each(CORE_VARIANTS)('configuration space (%s core)', (variant) => {
  it('matches QEMU byte for byte after reset (plain and doorbell)', async () => {
    const plain = await makeDevice(variant, { mode: 'plain', size: 1 << 20 });
    expect(dump(plain.device)).toEqual(PLAIN);
    const doorbell = await makeDevice(variant, { mode: 'doorbell', vectors: 2, size: 1 << 20 });
    expect(dump(doorbell.device)).toEqual(DOORBELL_2);
    expect(plain.device.configRead(0x50, 4)).toBe(0);
  });

  it("is the seed's device in intx mode: revision 0, pin A, optional 32-bit BAR2", async () => {
    const { device: d } = await makeDevice(variant, { mode: 'intx', use64: false, size: 1 << 20 });
    expect(d.configRead(0x08, 1)).toBe(0);
    expect(d.configRead(0x3d, 1)).toBe(1);
    expect(d.configRead(0x18, 4)).toBe(0);
    d.configWrite(0x18, 4, 0xffffffff);
    expect(d.configRead(0x18, 4)).toBe(0xfff00000);
    expect(d.configRead(0x1c, 4)).toBe(0);
  });

  it('carries the region identity the VMM chose in its Subsystem ID, read-only to the guest', async () => {
    const { device: d } = await makeDevice(variant, { mode: 'doorbell', vectors: 2, subsystemId: 0x2a });
    expect([d.configRead(0x2c, 2), d.configRead(0x2e, 2)]).toEqual([0x1af4, 0x2a]);
    d.configWrite(0x2e, 2, 0xffff);
    expect(d.configRead(0x2e, 2)).toBe(0x2a);
    const rest = dump(d);
    rest[0x2e] = 0x00;
    rest[0x2f] = 0x11;
    expect(rest, 'every other byte is QEMU').toEqual(DOORBELL_2);
    await expect(makeDevice(variant, { mode: 'doorbell', subsystemId: 0x10000 })).rejects.toMatchObject({
      code: 'ERR_IVSHMEM_INVALID_OPTION',
      message: expect.stringMatching(/subsystemId.*0\.\.0xffff/),
    });
  });

  it("has QEMU's write masks", async () => {
    const { device: d } = await makeDevice(variant, { mode: 'plain', size: 1 << 20 });
    const writable: number[] = [];
    for (let i = 0; i < 256; i++) {
      if (i >= 0x10 && i < 0x28) continue;
      const before = d.configRead(i, 1);
      d.configWrite(i, 1, 0xff);
      if (d.configRead(i, 1) !== before) writable.push((i << 8) | d.configRead(i, 1));
    }
    const expected = [0x0407, 0x0505, 0x0cff, 0x3cff];
    for (let i = 0x40; i < 0x100; i++) expected.push((i << 8) | 0xff);
    expect(writable).toEqual(expected);
  });

  it('protects the MSI-X capability except Enable and Function Mask', async () => {
    const { device: d } = await makeDevice(variant, { mode: 'doorbell', vectors: 2 });
    for (let i = 0x40; i < 0x4c; i++) d.configWrite(i, 1, 0xff);
    expect(dump(d).slice(0x40, 0x4c)).toEqual(hexBytes('11 00 01 c0 01 00 00 00 01 08 00 00'));
    d.configWrite(0x4c, 4, 0xdeadbeef); // past the capability: plain writable storage, as in QEMU
    expect(d.configRead(0x4c, 4)).toBe(0xdeadbeef);
  });

  it('answers BAR sizing as QEMU does', async () => {
    const { device: d } = await makeDevice(variant, { mode: 'doorbell', vectors: 1, size: 1 << 20 });
    const sized = [0x10, 0x14, 0x18, 0x1c, 0x20, 0x24].map((at) => {
      d.configWrite(at, 4, 0xffffffff);
      return d.configRead(at, 4);
    });
    expect(sized).toEqual([0xffffff00, 0xfffff000, 0xfff0000c, 0xffffffff, 0, 0]);
  });

  it('is accepted by a Linux-style probe', async () => {
    const { device: d } = await makeDevice(variant, { mode: 'doorbell', vectors: 4, size: 1 << 22 });
    const found = probeFunction(d);
    expect(found).toMatchObject({
      vendor: 0x1af4,
      device: 0x1110,
      subsystemVendor: 0x1af4,
      subsystem: 0x1100,
      classCode: 0x0500,
      revision: 1,
      headerType: 0,
      interruptPin: 0,
      capabilities: [{ id: 0x11, offset: 0x40 }],
      msix: { offset: 0x40, tableSize: 4, tableBar: 1, tableOffset: 0, pbaBar: 1, pbaOffset: 0x800 },
    });
    expect(found.bars).toEqual([
      { index: 0, size: 256n, is64: false, prefetchable: false },
      { index: 1, size: 4096n, is64: false, prefetchable: false },
      { index: 2, size: 1n << 22n, is64: true, prefetchable: true },
    ]);
    // The probe restored everything it touched.
    expect(d.configRead(0x10, 4)).toBe(0);
    expect(d.configRead(0x04, 2)).toBe(0);
  });

  it('reports BAR mappings as the guest programs them and memory decoding toggles', async () => {
    const { device: d, log } = await makeDevice(variant, { mode: 'doorbell', vectors: 1, size: 1 << 20 });
    d.configWrite(0x10, 4, 0xfebf0000);
    d.configWrite(0x14, 4, 0xfebf1000);
    d.configWrite(0x18, 4, 0x00000000);
    d.configWrite(0x1c, 4, 0x00000008); // BAR2 at 32 GiB
    expect(log.mapped).toEqual([]);
    d.configWrite(0x04, 2, 0x2);
    expect(log.mapped).toEqual([
      { bar: 0, address: 0xfebf0000n },
      { bar: 1, address: 0xfebf1000n },
      { bar: 2, address: 0x800000000n },
    ]);
    expect(d.barAddress(2)).toBe(0x800000000n);
    d.configWrite(0x10, 4, 0xffffffff); // sizing a live BAR unmaps it
    expect(log.mapped.at(-1)).toEqual({ bar: 0, address: null });
    d.configWrite(0x10, 4, 0xfebf0000);
    d.configWrite(0x04, 2, 0);
    expect(log.mapped.slice(-4)).toEqual([
      { bar: 0, address: 0xfebf0000n },
      { bar: 0, address: null },
      { bar: 1, address: null },
      { bar: 2, address: null },
    ]);
  });

  it('treats config accesses of bad size or range as invalid', async () => {
    const { device: d } = await makeDevice(variant, { mode: 'plain' });
    expect(d.configRead(0xfe, 4)).toBe(0);
    expect(d.configRead(0, 3)).toBe(0);
    d.configWrite(0x100, 1, 0xff);
    d.configWrite(-1, 1, 0xff);
    expect(d.counters().invalidGuestAccesses).toBe(4);
    expect(dump(d)).toEqual(PLAIN);
  });
});
