// Doorbell routing: peer = value >>> 16, vector = value & 0xff, through the route table to the
// handle the doorbell sink rings; everything else dropped and counted.
import { describe, expect, it } from 'vitest';
import { CORE_VARIANTS, makeDevice } from '../support/device-harness.js';
import { WasmCore } from '../../src/core/wasm-core.js';
import { MODE_DOORBELL } from '../../src/core/abi.js';

describe.each(CORE_VARIANTS)('doorbell routing (%s core)', (variant) => {
  it('rings the handle of (peer, vector) and counts it', async () => {
    const { device: d, log } = await makeDevice(variant, { mode: 'doorbell', vectors: 4, id: 1 });
    for (let v = 0; v < 4; v++) expect(d.connectPeerVector(5, 100 + v)).toBe(v);
    d.connectPeerVector(1, 200); // self: the device may ring its own vectors
    d.mmioWrite(0, 0x0c, 4, (5 << 16) | 3);
    d.mmioWrite(0, 0x0c, 4, (5 << 16) | 0);
    d.mmioWrite(0, 0x0c, 4, (1 << 16) | 0);
    expect(log.rings).toEqual([103, 100, 200]);
    expect(d.counters().doorbellsSent).toBe(3);
  });

  it('counts doorbells per (peer, vector) route, from zero again when a peer id comes back', async () => {
    const { device: d } = await makeDevice(variant, { mode: 'doorbell', vectors: 3 });
    for (let v = 0; v < 3; v++) d.connectPeerVector(7, 70 + v);
    d.connectPeerVector(8, 80);
    for (const [peer, vector, times] of [
      [7, 0, 2],
      [7, 2, 5],
      [8, 0, 1],
      [8, 1, 4],
      [9, 0, 3],
    ]) {
      for (let i = 0; i < times; i++) d.mmioWrite(0, 0x0c, 4, (peer << 16) | vector);
    }
    expect(d.peerDoorbells(7)).toEqual([2, 0, 5]);
    expect(d.peerDoorbells(8), 'vector 1 was never announced: dropped, not counted on a route').toEqual([1]);
    expect(d.peerDoorbells(9)).toEqual([]);
    expect(d.counters().doorbellsDropped).toEqual({ noPeer: 3, noVector: 4 });
    d.disconnectPeer(7);
    d.connectPeerVector(7, 71);
    expect(d.peerDoorbells(7)).toEqual([0]);
  });

  it('uses only bits 7..0 for the vector, as QEMU does', async () => {
    const { device: d, log } = await makeDevice(variant, { mode: 'doorbell', vectors: 2 });
    d.connectPeerVector(2, 10);
    d.connectPeerVector(2, 11);
    d.mmioWrite(0, 0x0c, 4, (2 << 16) | 0xff01);
    expect(log.rings).toEqual([11]);
  });

  it('drops doorbells to absent peers and vectors, by reason', async () => {
    const { device: d, log } = await makeDevice(variant, { mode: 'doorbell', vectors: 4 });
    d.connectPeerVector(3, 30);
    d.connectPeerVector(3, 31); // only 2 of 4 vectors announced
    d.mmioWrite(0, 0x0c, 4, (3 << 16) | 2);
    d.mmioWrite(0, 0x0c, 4, (3 << 16) | 255);
    d.mmioWrite(0, 0x0c, 4, (4 << 16) | 0);
    d.mmioWrite(0, 0x0c, 4, (0xffff << 16) | 0);
    d.mmioWrite(0, 0x0c, 4, 8 << 16); // QEMU's qtest writes this to a plain device
    expect(log.rings).toEqual([]);
    expect(d.counters().doorbellsDropped).toEqual({ noPeer: 3, noVector: 2 });
    expect(d.counters().doorbellsSent).toBe(0);
  });

  it('rings from narrow and unaligned doorbell writes as QEMU decodes them', async () => {
    const { device: d, log } = await makeDevice(variant, { mode: 'doorbell', vectors: 4 });
    for (let v = 0; v < 4; v++) d.connectPeerVector(0, 40 + v);
    d.mmioWrite(0, 0x0e, 1, 0x02); // one byte anywhere in the register is the whole value: peer 0, vector 2
    d.mmioWrite(0, 0x0d, 4, 0x00000103); // pieces (0x0d,1)=0x03 and (0x0e,2)=0x0001 ring twice
    expect(log.rings).toEqual([42, 43, 41]);
  });

  it("stops routing to a peer that left, and refuses a vector beyond the device's count", async () => {
    const { device: d, log } = await makeDevice(variant, { mode: 'doorbell', vectors: 1 });
    d.connectPeerVector(9, 90);
    expect(() => d.connectPeerVector(9, 91)).toThrow(expect.objectContaining({ code: 'ERR_IVSHMEM_TOO_MANY_VECTORS' }));
    expect(d.disconnectPeer(9)).toBe(1);
    expect(() => d.disconnectPeer(9)).toThrow(expect.objectContaining({ code: 'ERR_IVSHMEM_INVALID_PEER' }));
    d.mmioWrite(0, 0x0c, 4, 9 << 16);
    expect(log.rings).toEqual([]);
    expect(d.peerVectors(9)).toBe(0);
    d.connectPeerVector(9, 92); // the same id may come back (the server reuses ids after wrap-around)
    d.mmioWrite(0, 0x0c, 4, 9 << 16);
    expect(log.rings).toEqual([92]);
  });

  it('accepts peer ids up to 65535 and refuses others', async () => {
    const { device: d, log } = await makeDevice(variant, { mode: 'doorbell', vectors: 1 });
    d.connectPeerVector(65535, 7);
    d.mmioWrite(0, 0x0c, 4, 0xffff0000);
    expect(log.rings).toEqual([7]);
    for (const bad of [65536, -1, 1.5]) {
      expect(() => d.connectPeerVector(bad, 1)).toThrow(expect.objectContaining({ code: 'ERR_IVSHMEM_INVALID_PEER' }));
    }
    expect(() => d.connectPeerVector(1, -5)).toThrow(expect.objectContaining({ code: 'ERR_IVSHMEM_INVALID_OPTION' }));
  });

  it('never rings on a plain device', async () => {
    const { device: d } = await makeDevice(variant, { mode: 'plain' });
    d.mmioWrite(0, 0x0c, 4, 0);
    expect(d.counters().doorbellsDropped.noPeer).toBe(1);
  });

  it('leaves no trace of a refused route', async () => {
    // Found by test/device/hostile-guest.test.ts: a device without vectors refused the route but kept the
    // peer, which then disconnected with 0 vectors and turned its doorbells into 'no vector'.
    const { device: d } = await makeDevice(variant, { mode: 'plain' });
    expect(() => d.connectPeerVector(5, 1)).toThrow(expect.objectContaining({ code: 'ERR_IVSHMEM_TOO_MANY_VECTORS' }));
    expect(d.peerVectors(5)).toBe(0);
    expect(() => d.disconnectPeer(5)).toThrow(expect.objectContaining({ code: 'ERR_IVSHMEM_INVALID_PEER' }));
    d.mmioWrite(0, 0x0c, 4, 5 << 16);
    expect(d.counters().doorbellsDropped).toEqual({ noPeer: 1, noVector: 0 });
  });
});

describe('WebAssembly route table memory', () => {
  const host = { sendMsi() {}, setIrqLevel() {} };

  it('grows with the peers present, not with the id space', () => {
    const core = new WasmCore(host);
    expect(core.init(MODE_DOORBELL, 256, 0)).toBe(0);
    const start = core.memoryBytes();
    core.addRoute(65535, 1); // the highest id: a 256 KiB directory, one block
    const oneHighPeer = core.memoryBytes() - start;
    expect(oneHighPeer).toBeLessThan(512 * 1024); // 65,536 × 256 slots would be 64 MiB
    for (let p = 0; p < 1024; p++) for (let v = 0; v < 4; v++) core.addRoute(p, p * 4 + v);
    // each peer owns one 4 KiB block (8-byte header + 256 f64 doorbell counts + 256 handles,
    // rounded to its size class)
    expect(core.memoryBytes() - start).toBeLessThanOrEqual(oneHighPeer + 1024 * 4096 + 65536);
  });

  it('reuses the blocks of peers that left', () => {
    const core = new WasmCore(host);
    core.init(MODE_DOORBELL, 4, 0);
    for (let round = 0; round < 50; round++) {
      for (let p = 0; p < 200; p++) core.addRoute(p, p);
      const used = core.memoryBytes();
      for (let p = 0; p < 200; p++) expect(core.removePeer(p)).toBe(1);
      if (round > 0) expect(core.memoryBytes()).toBe(used);
    }
  });
});
