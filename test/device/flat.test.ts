// mode 'flat' (QEMU's ivshmem-flat, hw/misc/ivshmem-flat.c) as a guest sees it: a 16-byte register
// window and the shared memory at the addresses the monitor chose, no configuration space, one
// IRQ line pulsed once per interrupt, 1..64 vectors. Where QEMU's flat device agrees with itself
// these are its semantics (IntrMask and IntrStatus reserved: read 0, writes ignored; IVPosition
// the id; Doorbell write-only, the vector in bits 15..0); where it has defects we do not copy
// them (a vector past the peer's vectors is counted and dropped, not an out-of-bounds eventfd).
import { describe, expect, it } from 'vitest';
import { CORE_VARIANTS, makeDevice } from '../support/device-harness.js';
import { codeOf } from '../support/error-code.js';

const REGS = 0x4000_0000;
const MEM = 0x5000_0000;
const flat = { mode: 'flat' as const, registersAddress: REGS, memoryAddress: MEM };

describe.each(CORE_VARIANTS)('ivshmem-flat (%s core)', (variant) => {
  it('tells the monitor where its two regions are at creation, and unmaps them on close', async () => {
    const { device: d, log } = await makeDevice(variant, { ...flat, vectors: 4, id: 3, size: 8192 });
    expect(d.bars.map((b) => [b.index, b.size])).toEqual([
      [0, 16],
      [2, 8192],
    ]);
    expect(log.mapped).toEqual([
      { bar: 0, address: BigInt(REGS) },
      { bar: 2, address: BigInt(MEM) },
    ]);
    expect([d.barAddress(0), d.barAddress(1), d.barAddress(2)]).toEqual([BigInt(REGS), null, BigInt(MEM)]);
    d.reset(); // nothing to move: no BAR registers, no command register
    expect(log.mapped).toHaveLength(2);
    d.close();
    expect(log.mapped.slice(2)).toEqual([
      { bar: 0, address: null },
      { bar: 2, address: null },
    ]);
  });

  it('reads IVPosition as its id, and IntrMask, IntrStatus and Doorbell as 0; writes to the reserved two change nothing', async () => {
    const { device: d, log } = await makeDevice(variant, { ...flat, vectors: 2, id: 0x1234 });
    d.mmioWrite(0, 0x00, 4, 0xffffffff);
    d.mmioWrite(0, 0x04, 4, 0xffffffff);
    d.fireVector(0);
    expect([d.mmioRead(0, 0x00, 4), d.mmioRead(0, 0x04, 4), d.mmioRead(0, 0x08, 4)]).toEqual([0, 0, 0x1234]);
    expect(log.irq, 'a pulse, untouched by the reserved registers').toEqual([1, 0]);
    expect(d.counters().invalidGuestAccesses).toBe(0);
    expect(d.mmioRead(0, 0x0c, 4), 'Doorbell is write-only').toBe(0);
    d.mmioWrite(0, 0x08, 4, 7); // IVPosition is read-only
    expect(d.mmioRead(0, 0x08, 4)).toBe(0x1234);
    expect(d.counters().invalidGuestAccesses).toBe(2);
  });

  it('has a 16-byte window: offsets past it read 0, writes there are dropped, each counted', async () => {
    const { device: d, log } = await makeDevice(variant, { ...flat, vectors: 2, id: 1 });
    d.connectPeerVector(2, 20);
    for (const offset of [0x10, 0x1c, 0xfc]) {
      expect(d.mmioRead(0, offset, 4)).toBe(0);
      d.mmioWrite(0, offset, 4, 2 << 16); // a doorbell value, at a PCI-only offset
    }
    expect(log.rings).toEqual([]);
    expect(d.counters().invalidGuestAccesses).toBe(6);
    expect(d.mmioRead(1, 0, 4), 'no MSI-X table').toBe(0);
    expect(d.counters().invalidGuestAccesses).toBe(7);
  });

  it("takes the vector from bits 15..0 and drops one past the peer's vectors (QEMU's flat device indexes past its array)", async () => {
    const { device: d, log } = await makeDevice(variant, { ...flat, vectors: 64, id: 1 });
    d.connectPeerVector(2, 20);
    d.connectPeerVector(2, 21);
    d.mmioWrite(0, 0x0c, 4, (2 << 16) | 1);
    d.mmioWrite(0, 0x0c, 4, (2 << 16) | 0x0101); // the PCI device would ring vector 1 here
    d.mmioWrite(0, 0x0c, 4, (2 << 16) | 63);
    d.mmioWrite(0, 0x0c, 4, (2 << 16) | 0xffff);
    d.mmioWrite(0, 0x0c, 4, (9 << 16) | 0);
    expect(log.rings).toEqual([21]);
    expect(d.counters().doorbellsSent).toBe(1);
    expect(d.counters().doorbellsDropped).toEqual({ noPeer: 1, noVector: 3 });
  });

  it('pulses its one line for each interrupt, on any of its vectors; a vector past its count is dropped', async () => {
    const { device: d, log } = await makeDevice(variant, { ...flat, vectors: 3 });
    d.fireVector(0);
    d.fireVector(2);
    d.fireVector(3);
    expect(log.irq).toEqual([1, 0, 1, 0]);
    expect(log.msi).toEqual([]);
    expect(d.counters().interruptsDelivered).toBe(2);
    expect(d.counters().interruptsDropped.badVector).toBe(1);
    expect(d.vectorCounters().map((v) => v.delivered)).toEqual([1, 0, 1]);
  });

  it('has no configuration space: config reads are 0 and writes are dropped, counted', async () => {
    const { device: d, log } = await makeDevice(variant, { ...flat });
    expect(d.configRead(0x00, 4)).toBe(0);
    d.configWrite(0x04, 2, 0x0006);
    d.configWrite(0x10, 4, 0x1000);
    expect(d.configRead(0x04, 2)).toBe(0);
    expect(d.counters().invalidGuestAccesses).toBe(4);
    expect(log.mapped).toHaveLength(2);
  });

  it('takes a shared memory of any size up to 4 GiB - 1 (no BAR to round it to a power of two)', async () => {
    const { device: d } = await makeDevice(variant, { ...flat, memory: new ArrayBuffer(3000) });
    expect(d.bars[1].size).toBe(3000);
    d.mmioWrite(2, 2996, 4, 0xcafef00d);
    expect(d.mmioRead(2, 2996, 4)).toBe(0xcafef00d);
    expect(d.mmioRead(2, 2998, 4)).toBe(0);
    expect(d.counters().invalidGuestAccesses).toBe(1);
  });

  it('saves and loads its state like the PCI device (master on)', async () => {
    const { device: a } = await makeDevice(variant, { ...flat, vectors: 2, master: 'on' });
    a.mmioWrite(2, 0, 4, 0x11223344);
    const state = a.saveState({ memory: true });
    const { device: b } = await makeDevice(variant, { ...flat, vectors: 2, master: 'on' });
    b.loadState(state);
    expect(b.mmioRead(2, 0, 4)).toBe(0x11223344);
    const { device: pci } = await makeDevice(variant, { mode: 'doorbell', vectors: 2, master: 'on' });
    expect(
      codeOf(() => pci.loadState(state)),
      'a flat state in a PCI device',
    ).toBe('ERR_IVSHMEM_STATE_MISMATCH');
  });
});

describe('ivshmem-flat options', () => {
  const base = { ...flat, memory: new ArrayBuffer(4096), transport: { setIrqLevel() {}, sendMsi() {} } };
  const create = async (extra: object) => {
    const { IvshmemDevice } = await import('../../src/device/device.js');
    return IvshmemDevice.create({ ...base, ...extra } as never);
  };

  it('allows 1..64 vectors', async () => {
    await expect(create({ vectors: 64 })).resolves.toMatchObject({ vectors: 64, mode: 'flat' });
    await expect(create({ vectors: 65 })).rejects.toMatchObject({ code: 'ERR_IVSHMEM_INVALID_VECTORS' });
    await expect(create({ vectors: 0 })).rejects.toMatchObject({ code: 'ERR_IVSHMEM_INVALID_VECTORS' });
  });

  it('needs both addresses, 4-byte aligned registers, no overlap; refuses them in the PCI modes, and the PCI-only options', async () => {
    for (const [extra, message] of [
      [{ registersAddress: undefined }, /registersAddress is required in flat mode/],
      [{ memoryAddress: undefined }, /memoryAddress is required in flat mode/],
      [{ registersAddress: REGS + 2 }, /not 4-byte aligned/],
      [{ registersAddress: -16 }, /registersAddress must be an address/],
      [{ memoryAddress: 2n ** 64n }, /memoryAddress must be an address/],
      [{ memoryAddress: 0.5 }, /memoryAddress must be an address/],
      [{ registersAddress: MEM + 4080 }, /overlaps the shared memory/],
      [{ memoryAddress: 2n ** 64n - 2048n }, /runs past the 64-bit address space/],
      [{ mode: 'doorbell' }, /registersAddress applies to the flat mode only/],
      [{ subsystemId: 1 }, /subsystemId is a PCI register: a flat device has none/],
    ] as const) {
      await expect(create(extra)).rejects.toMatchObject({ code: 'ERR_IVSHMEM_INVALID_OPTION', message });
    }
    await expect(create({ registersAddress: MEM + 4096, memoryAddress: BigInt(MEM) })).resolves.toMatchObject({
      mode: 'flat',
    });
  });
});
