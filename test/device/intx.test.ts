// INTx (the seed's interrupt mode): a fired vector sets IntrStatus bit 0 and the pin follows
// (IntrStatus & IntrMask) != 0, reported only when it changes; INTx Disable gates the pin, and
// the status register's interrupt bit shows the device's own level.
import { describe, expect, it } from 'vitest';
import { CORE_VARIANTS, makeDevice } from '../support/device-harness.js';

describe.each(CORE_VARIANTS)('INTx (%s core)', (variant) => {
  it('raises the pin when status and mask overlap, lowers it on read-to-clear', async () => {
    const { device: d, log } = await makeDevice(variant, { mode: 'intx', vectors: 2 });
    d.fireVector(1);
    expect(log.irq).toEqual([]); // masked
    d.mmioWrite(0, 0, 4, 1);
    expect(log.irq).toEqual([1]);
    d.fireVector(0); // already high: no report
    d.mmioWrite(0, 0, 4, 3);
    expect(log.irq).toEqual([1]);
    expect(d.mmioRead(0, 4, 4)).toBe(1);
    expect(log.irq).toEqual([1, 0]);
    expect(d.counters().interruptsDelivered).toBe(2);
  });

  it('follows guest writes to IntrStatus and IntrMask', async () => {
    const { device: d, log } = await makeDevice(variant, { mode: 'intx' });
    d.mmioWrite(0, 4, 4, 0x80);
    d.mmioWrite(0, 0, 4, 0x80);
    d.mmioWrite(0, 0, 4, 0x7f);
    d.mmioWrite(0, 4, 4, 0x01);
    d.mmioWrite(0, 4, 4, 0x00);
    expect(log.irq).toEqual([1, 0, 1, 0]);
  });

  it('gates the pin with INTx Disable but keeps status bit 3 live', async () => {
    const { device: d, log } = await makeDevice(variant, { mode: 'intx' });
    d.mmioWrite(0, 0, 4, 1);
    d.fireVector(0);
    expect(d.configRead(0x06, 2) & 0x08).toBe(0x08);
    d.configWrite(0x04, 2, 0x400);
    expect(log.irq).toEqual([1, 0]);
    expect(d.configRead(0x06, 2) & 0x08).toBe(0x08);
    d.configWrite(0x04, 2, 0);
    expect(log.irq).toEqual([1, 0, 1]);
    d.mmioRead(0, 4, 4);
    expect((d.configRead(0x04, 4) >>> 16) & 0x08).toBe(0);
    expect(log.irq).toEqual([1, 0, 1, 0]);
  });

  it("drops vectors beyond the device's count", async () => {
    const { device: d } = await makeDevice(variant, { mode: 'intx', vectors: 1 });
    d.fireVector(1);
    expect(d.counters().interruptsDropped.badVector).toBe(1);
    expect(d.mmioRead(0, 4, 4)).toBe(0);
  });

  it('keeps IntrStatus and IntrMask inert in doorbell mode (QEMU 5.0+)', async () => {
    const { device: d, log } = await makeDevice(variant, { mode: 'doorbell', vectors: 1 });
    d.mmioWrite(0, 0, 4, 1);
    d.mmioWrite(0, 4, 4, 1);
    expect(log.irq).toEqual([]);
    expect(d.configRead(0x06, 2) & 0x08).toBe(0);
  });
});
