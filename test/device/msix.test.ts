// MSI-X delivery: the table and PBA in BAR1, function mask and enable from the capability, the
// masked → pending → delivered-on-unmask rule, and QEMU's "disabled means lost".
import { describe, expect, it } from 'vitest';
import { CORE_VARIANTS, enableMsix, makeDevice, programVector } from '../support/device-harness.js';

const PBA = 0x800;

describe.each(CORE_VARIANTS)('MSI-X (%s core)', (variant) => {
  it('starts with every vector masked and nothing pending', async () => {
    const { device: d } = await makeDevice(variant, { mode: 'doorbell', vectors: 3 });
    for (let v = 0; v < 3; v++) {
      expect([0, 4, 8, 12].map((o) => d.mmioRead(1, v * 16 + o, 4))).toEqual([0, 0, 0, 1]);
    }
    expect(d.mmioRead(1, PBA, 4)).toBe(0);
  });

  it("delivers an unmasked vector's message", async () => {
    const { device: d, log } = await makeDevice(variant, { mode: 'doorbell', vectors: 2 });
    enableMsix(d);
    programVector(d, 1, 0xfee01000, 0x4041, false);
    d.fireVector(1);
    expect(log.msi).toEqual([{ address: 0xfee01000, data: 0x4041, vector: 1 }]);
    expect(d.counters().interruptsDelivered).toBe(1);
  });

  it('carries a 64-bit message address', async () => {
    const { device: d, log } = await makeDevice(variant, { mode: 'doorbell', vectors: 1 });
    enableMsix(d);
    d.mmioWrite(1, 0, 8, 0x0000001200345678n);
    d.mmioWrite(1, 12, 4, 0);
    d.fireVector(0);
    expect(log.msi[0].address).toBe(0x1200345678);
  });

  it('pends a masked vector and delivers it on unmask, with the message current at that time', async () => {
    const { device: d, log } = await makeDevice(variant, { mode: 'doorbell', vectors: 2 });
    enableMsix(d);
    programVector(d, 0, 0xfee00000, 0x10, true);
    d.fireVector(0);
    d.fireVector(0);
    expect(log.msi).toEqual([]);
    expect(d.mmioRead(1, PBA, 4)).toBe(1);
    expect(d.counters().interruptsPended).toBe(2);
    d.mmioWrite(1, 8, 4, 0x20);
    d.mmioWrite(1, 12, 4, 0); // unmask
    expect(log.msi).toEqual([{ address: 0xfee00000, data: 0x20, vector: 0 }]);
    expect(d.mmioRead(1, PBA, 4)).toBe(0);
  });

  it('pends under the function mask and delivers every pending unmasked vector when it clears', async () => {
    const { device: d, log } = await makeDevice(variant, { mode: 'doorbell', vectors: 3 });
    enableMsix(d, true);
    for (let v = 0; v < 3; v++) programVector(d, v, 0xfee00000, v, v === 2);
    for (let v = 0; v < 3; v++) d.fireVector(v);
    expect(d.mmioRead(1, PBA, 4)).toBe(0b111);
    d.configWrite(0x43, 1, 0x80); // clear Function Mask, keep Enable
    expect(log.msi.map((m) => m.vector)).toEqual([0, 1]);
    expect(d.mmioRead(1, PBA, 4)).toBe(0b100);
  });

  it('loses vectors fired while MSI-X is disabled, as QEMU does', async () => {
    const { device: d, log } = await makeDevice(variant, { mode: 'doorbell', vectors: 1 });
    d.configWrite(0x04, 2, 0x6);
    programVector(d, 0, 0xfee00000, 1, false);
    d.fireVector(0);
    enableMsix(d);
    expect(log.msi).toEqual([]);
    expect(d.mmioRead(1, PBA, 4)).toBe(0);
    expect(d.counters().interruptsDropped.msixDisabled).toBe(1);
  });

  it('keeps pending bits across disable and delivers them on re-enable', async () => {
    const { device: d, log } = await makeDevice(variant, { mode: 'doorbell', vectors: 1 });
    enableMsix(d, true);
    programVector(d, 0, 0xfee00000, 5, false);
    d.fireVector(0);
    d.configWrite(0x43, 1, 0x00); // disable
    expect(d.mmioRead(1, PBA, 4)).toBe(1);
    d.configWrite(0x43, 1, 0x80); // enable, unmasked
    expect(log.msi).toEqual([{ address: 0xfee00000, data: 5, vector: 0 }]);
  });

  it('drops messages while bus mastering is off', async () => {
    const { device: d, log } = await makeDevice(variant, { mode: 'doorbell', vectors: 1 });
    enableMsix(d);
    programVector(d, 0, 0xfee00000, 5, false);
    d.configWrite(0x04, 2, 0x2); // memory on, master off
    d.fireVector(0);
    expect(log.msi).toEqual([]);
    expect(d.counters().interruptsDropped.noBusMaster).toBe(1);
  });

  it('counts each vector: fired, delivered, pended, dropped by reason', async () => {
    const { device: d } = await makeDevice(variant, { mode: 'doorbell', vectors: 3 });
    d.fireVector(2); // MSI-X still disabled: lost
    enableMsix(d);
    programVector(d, 0, 0xfee00000, 1, false);
    programVector(d, 1, 0xfee00000, 2, true);
    d.fireVector(0);
    d.fireVector(0);
    d.fireVector(1); // masked: pending
    d.fireVector(1); // still one pending bit, counted twice
    d.mmioWrite(1, 16 + 12, 4, 0); // unmask vector 1: the pending message goes out
    d.configWrite(0x04, 2, 0x2); // bus master off
    d.fireVector(0);
    d.fireVector(7); // no such vector: only the device-wide counter
    const zero = { fired: 0, delivered: 0, pended: 0, dropped: { msixDisabled: 0, noBusMaster: 0 } };
    expect(d.vectorCounters()).toEqual([
      { ...zero, fired: 3, delivered: 2, dropped: { msixDisabled: 0, noBusMaster: 1 } },
      { ...zero, fired: 2, delivered: 1, pended: 2 },
      { ...zero, fired: 1, dropped: { msixDisabled: 1, noBusMaster: 0 } },
    ]);
    expect(d.counters().interruptsDropped.badVector).toBe(1);
  });

  it('refuses sub-dword table accesses and PBA writes, keeps every bit of vector control', async () => {
    const { device: d } = await makeDevice(variant, { mode: 'doorbell', vectors: 2 });
    const before = d.counters().invalidGuestAccesses;
    d.mmioWrite(1, 12, 1, 0); // byte write to vector control: ignored
    d.mmioWrite(1, 12, 2, 0);
    expect(d.mmioRead(1, 12, 4)).toBe(1);
    expect(d.mmioRead(1, 12, 1)).toBe(0);
    d.mmioWrite(1, PBA, 4, 0xffffffff);
    expect(d.mmioRead(1, PBA, 4)).toBe(0);
    d.mmioWrite(1, 12, 4, 0xfffffffe);
    expect(d.mmioRead(1, 12, 4)).toBe(0xfffffffe);
    expect(d.mmioRead(1, 8, 8)).toBe(0xfffffffe00000000n);
    expect(d.mmioRead(1, 0x100, 4)).toBe(0); // between table and PBA
    expect(d.mmioRead(1, 0xffc, 4)).toBe(0);
    expect(d.counters().invalidGuestAccesses - before).toBe(6);
  });

  it('lays out BAR1 as QEMU does for any vector count', async () => {
    const cases: [number, number, number][] = [
      [1, 4096, 0x800],
      [128, 4096, 0x800],
      [129, 4096, 129 * 16],
      [200, 4096, 3200],
      [256, 8192, 4096],
      [2048, 65536, 32768],
    ];
    for (const [vectors, size, pba] of cases) {
      const { device: d } = await makeDevice(variant, { mode: 'doorbell', vectors });
      expect({ vectors, size: d.bars.find((b) => b.index === 1)?.size, pba: d.configRead(0x48, 4) & ~7 }).toEqual({
        vectors,
        size,
        pba,
      });
      expect(d.configRead(0x42, 2) & 0x7ff).toBe(vectors - 1);
    }
  });
});
