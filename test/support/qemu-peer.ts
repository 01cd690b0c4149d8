// A real QEMU ivshmem-doorbell as a peer, set up over qtest the way firmware and a driver would:
// BARs placed, memory decoding and bus mastering on, MSI-X enabled with every vector left masked,
// so a doorbell that reaches it shows up as a pending bit in its PBA (QEMU's own test does this).
import { expect } from 'vitest';
import type { QTest } from './qtest.js';

export const QEMU_BAR0 = 0xfebf0000;
export const QEMU_BAR1 = 0xfebf1000;
export const QEMU_BAR2 = 0xfd000000;

/** Returns QEMU's IVPosition and the guest-physical address of its PBA. */
export async function setUpQemuDoorbell(q: QTest): Promise<{ ivPosition: number; pba: number }> {
  await q.findDevice(0x11101af4);
  await q.cfgWrite(0x10, 4, QEMU_BAR0);
  await q.cfgWrite(0x14, 4, QEMU_BAR1);
  await q.cfgWrite(0x18, 4, QEMU_BAR2);
  await q.cfgWrite(0x1c, 4, 0);
  await q.cfgWrite(0x04, 2, 0x6);
  let cap = (await q.cfgRead(0x34, 1)) & 0xfc;
  while (cap !== 0 && (await q.cfgRead(cap, 1)) !== 0x11) cap = (await q.cfgRead(cap + 1, 1)) & 0xfc;
  expect(cap, 'MSI-X capability').not.toBe(0);
  const pba = await q.cfgRead(cap + 8, 4);
  expect(pba & 7, 'PBA in BAR1').toBe(1);
  await q.cfgWrite(cap + 2, 2, ((await q.cfgRead(cap + 2, 2)) & 0x3fff) | 0x8000);
  return { ivPosition: Number(await q.read(QEMU_BAR0 + 8, 4)), pba: QEMU_BAR1 + ((pba & ~7) >>> 0) };
}

export { until } from './until.js';
