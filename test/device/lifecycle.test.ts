// Reset, state save/load and close: what survives a reset, a save/load round trip that carries
// every piece of guest-visible state, and refusals that change nothing.
import { describe, expect, it } from 'vitest';
import { CORE_VARIANTS, enableMsix, makeDevice, programVector } from '../support/device-harness.js';
import type { IvshmemDevice } from '../../src/device/device.js';
import { STATE_VERSION } from '../../src/device/persist.js';

const configDump = (d: IvshmemDevice) => Array.from({ length: 256 }, (_, i) => d.configRead(i, 1));
const bar1Dump = (d: IvshmemDevice, vectors: number) => [
  ...Array.from({ length: vectors * 4 }, (_, i) => d.mmioRead(1, i * 4, 4)),
  d.mmioRead(1, 0x800, 4),
];

describe.each(CORE_VARIANTS)('lifecycle (%s core)', (variant) => {
  it('reset clears registers, command and MSI-X state, and keeps id, routes and memory', async () => {
    const memory = new ArrayBuffer(4096);
    const { device: d, log } = await makeDevice(variant, { mode: 'doorbell', vectors: 2, id: 4, memory });
    const fresh = configDump(d);
    d.connectPeerVector(1, 11);
    d.mmioWrite(0, 0, 4, 0xff);
    d.mmioWrite(0, 4, 4, 0xff);
    d.configWrite(0x10, 4, 0xfebf0000);
    enableMsix(d, true);
    d.configWrite(0x0c, 1, 0x10);
    programVector(d, 0, 0xfee00000, 1, false);
    d.fireVector(0);
    new Uint8Array(memory)[0] = 0x42;
    d.reset();
    expect([d.mmioRead(0, 0, 4), d.mmioRead(0, 4, 4), d.mmioRead(0, 8, 4)]).toEqual([0, 0, 4]);
    expect(configDump(d)).toEqual(fresh);
    expect(bar1Dump(d, 2)).toEqual([0, 0, 0, 1, 0, 0, 0, 1, 0]);
    d.mmioWrite(0, 0x0c, 4, 1 << 16);
    expect(log.rings).toEqual([11]);
    expect(new Uint8Array(memory)[0]).toBe(0x42);
  });

  it('reset lowers a raised INTx pin', async () => {
    const { device: d, log } = await makeDevice(variant, { mode: 'intx' });
    d.mmioWrite(0, 0, 4, 1);
    d.fireVector(0);
    d.reset();
    expect(log.irq).toEqual([1, 0]);
  });

  it('saves and loads registers, MSI-X and config space', async () => {
    const a = await makeDevice(variant, { mode: 'doorbell', vectors: 3, master: 'on' });
    enableMsix(a.device, true);
    for (let v = 0; v < 3; v++) programVector(a.device, v, 0xfee00000 + v * 16, 0x100 + v, v === 1);
    a.device.fireVector(1);
    a.device.mmioWrite(0, 0, 4, 0x1234);
    a.device.mmioWrite(0, 4, 4, 0x5678);
    a.device.configWrite(0x10, 4, 0xfebf0000);
    a.device.configWrite(0x3c, 1, 11);
    const state = a.device.saveState();

    const b = await makeDevice(variant, { mode: 'doorbell', vectors: 3, master: 'on' });
    b.device.loadState(state);
    expect(configDump(b.device)).toEqual(configDump(a.device));
    expect(bar1Dump(b.device, 3)).toEqual(bar1Dump(a.device, 3));
    expect([b.device.mmioRead(0, 0, 4), b.device.mmioRead(0, 4, 4)]).toEqual([0x1234, 0x5678]);
    expect(b.device.barAddress(0)).toBe(0xfebf0000n);
    // The loaded device behaves like the saved one: unmasking vector 1 and clearing the function
    // mask delivers only what was pending.
    b.device.mmioWrite(1, 16 + 12, 4, 0);
    b.device.configWrite(0x43, 1, 0x80);
    expect(b.log.msi).toEqual([{ address: 0xfee00010, data: 0x101, vector: 1 }]);
  });

  it("delivers pending unmasked vectors found in a loaded state, as QEMU's msix_load", async () => {
    const a = await makeDevice(variant, { mode: 'doorbell', vectors: 1, master: 'on' });
    enableMsix(a.device, true);
    programVector(a.device, 0, 0xfee00000, 7, false);
    a.device.fireVector(0); // pending under the function mask
    const state = a.device.saveState();
    // A hand-edited state: Function Mask cleared in config and control word, PBA bit kept.
    const edited = state.slice();
    edited[24 + 0x43] = 0x80;
    new DataView(edited.buffer).setUint32(284 + 8, 0x5, true); // control: enable | bus master
    const b = await makeDevice(variant, { mode: 'doorbell', vectors: 1, master: 'on' });
    b.device.loadState(edited);
    expect(b.log.msi).toEqual([{ address: 0xfee00000, data: 7, vector: 0 }]);
  });

  it('reports the loaded INTx level to the monitor', async () => {
    const a = await makeDevice(variant, { mode: 'intx', master: 'on' });
    a.device.mmioWrite(0, 0, 4, 1);
    a.device.fireVector(0);
    const b = await makeDevice(variant, { mode: 'intx', master: 'on' });
    b.device.loadState(a.device.saveState());
    expect(b.log.irq).toEqual([1]);
    expect(b.device.configRead(0x06, 2) & 0x08).toBe(0x08);
  });

  it('refuses foreign, newer, damaged or mismatched state with a code, changing nothing', async () => {
    const a = await makeDevice(variant, { mode: 'doorbell', vectors: 2, master: 'on' });
    a.device.configWrite(0x04, 2, 0x6);
    const good = a.device.saveState();
    const b = await makeDevice(variant, { mode: 'doorbell', vectors: 2, master: 'on' });
    const before = configDump(b.device);
    const refusals: [Uint8Array, string][] = [
      [new Uint8Array([1, 2, 3]), 'ERR_IVSHMEM_STATE_FOREIGN'],
      [new TextEncoder().encode('not a device state at all'), 'ERR_IVSHMEM_STATE_FOREIGN'],
      [
        (() => {
          const s = good.slice();
          s[4] = STATE_VERSION + 1;
          return s;
        })(),
        'ERR_IVSHMEM_STATE_VERSION',
      ],
      [good.slice(0, good.length - 4), 'ERR_IVSHMEM_STATE_CORRUPT'],
      [
        (() => {
          const s = good.slice();
          s[24 + 0x00] ^= 1;
          return s;
        })(),
        'ERR_IVSHMEM_STATE_MISMATCH',
      ],
      [
        (() => {
          const s = good.slice();
          s[24 + 0x04] = 0x00;
          return s;
        })(),
        'ERR_IVSHMEM_STATE_CORRUPT',
      ],
      [
        (await makeDevice(variant, { mode: 'doorbell', vectors: 3, master: 'on' })).device.saveState(),
        'ERR_IVSHMEM_STATE_MISMATCH',
      ],
      [(await makeDevice(variant, { mode: 'plain', master: 'on' })).device.saveState(), 'ERR_IVSHMEM_STATE_MISMATCH'],
    ];
    for (const [bytes, code] of refusals) {
      expect(() => b.device.loadState(bytes)).toThrow(expect.objectContaining({ code }));
    }
    expect(configDump(b.device)).toEqual(before);
    b.device.loadState(good);
    expect(b.device.configRead(0x04, 2)).toBe(0x6);
  });

  it('refuses a state with pending bits past the last vector', async () => {
    // Found by test/device/hostile-guest.test.ts: the PBA is padded to 64 bits, and a damaged state could
    // leave a pending bit for a vector that does not exist, which nothing would ever clear.
    const { device: d } = await makeDevice(variant, { mode: 'doorbell', vectors: 2, master: 'on' });
    const good = d.saveState();
    const pba = 284 + 4 * (3 + 2 * 4);
    const withBit = (at: number, bit: number) => {
      const s = good.slice();
      s[at] |= bit;
      return s;
    };
    for (const bad of [withBit(pba, 0x04), withBit(pba + 3, 0x80), withBit(pba + 4, 0x01)]) {
      expect(() => d.loadState(bad)).toThrow(expect.objectContaining({ code: 'ERR_IVSHMEM_STATE_CORRUPT' }));
      expect(d.mmioRead(1, 0x800, 8)).toBe(0n);
    }
    d.loadState(withBit(pba, 0x02)); // vector 1 exists: pending while MSI-X is off
    expect(d.mmioRead(1, 0x800, 8)).toBe(2n);
  });

  it("carries a master's BAR2 memory when asked, and still reads version-1 states", async () => {
    const a = await makeDevice(variant, { mode: 'doorbell', vectors: 1, master: 'on' });
    const size = a.device.sharedMemory.size;
    const pattern = (i: number) => (i * 2654435761) >>> 24;
    for (let i = 0; i < size; i += 4) a.device.mmioWrite(2, i, 4, (pattern(i) * 0x01010101) >>> 0);
    a.device.mmioWrite(0, 0, 4, 0x77);
    const withMemory = a.device.saveState({ memory: true });
    const without = a.device.saveState();
    expect(withMemory.byteLength - without.byteLength).toBe(size);

    const b = await makeDevice(variant, { mode: 'doorbell', vectors: 1, master: 'on' });
    b.device.loadState(without);
    expect(b.device.mmioRead(2, 0, 4), 'a state without memory leaves BAR2 alone').toBe(0);
    b.device.loadState(withMemory);
    expect(new Uint8Array(b.device.sharedMemory.buffer, 0, size)).toEqual(
      new Uint8Array(a.device.sharedMemory.buffer, 0, size),
    );
    expect(b.device.mmioRead(0, 0, 4)).toBe(0x77);

    // Damaged memory sections are refused before anything changes.
    const c = await makeDevice(variant, { mode: 'doorbell', vectors: 1, master: 'on' });
    const v1WithMemoryFlag = withMemory.slice();
    v1WithMemoryFlag[4] = 1;
    for (const bad of [withMemory.slice(0, withMemory.length - 1), v1WithMemoryFlag]) {
      expect(() => c.device.loadState(bad)).toThrow(expect.objectContaining({ code: 'ERR_IVSHMEM_STATE_CORRUPT' }));
      expect(c.device.mmioRead(2, 4, 4)).toBe(0);
    }
    // Without memory the state is written as version 1, which the first release reads too.
    expect([without[4], withMemory[4]]).toEqual([1, 2]);
    c.device.loadState(without);
    expect(c.device.mmioRead(0, 0, 4)).toBe(0x77);
  });

  it('blocks migration of non-master devices, as QEMU does', async () => {
    const { device: d } = await makeDevice(variant, { mode: 'doorbell', vectors: 1, id: 3 });
    expect(d.master).toBe(false);
    expect(() => d.saveState()).toThrow(expect.objectContaining({ code: 'ERR_IVSHMEM_MIGRATION_BLOCKED' }));
    const auto = await makeDevice(variant, { mode: 'doorbell', vectors: 1, id: 0, master: 'auto' });
    expect(auto.device.master).toBe(true);
    expect(auto.device.migrationBlocker).toBeNull();
  });

  it('close is idempotent and later use throws ERR_IVSHMEM_CLOSED', async () => {
    const { device: d } = await makeDevice(variant, { mode: 'plain' });
    d.close();
    d.close();
    expect(d.closed).toBe(true);
    expect(() => d.mmioRead(0, 0, 4)).toThrow(expect.objectContaining({ code: 'ERR_IVSHMEM_CLOSED' }));
    expect(() => d.configWrite(0, 4, 0)).toThrow(expect.objectContaining({ code: 'ERR_IVSHMEM_CLOSED' }));
  });
});
