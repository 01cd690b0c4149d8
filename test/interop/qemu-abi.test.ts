// Differential test: the same guest accesses against real QEMU (qemu-system-x86_64 -qtest, CPU
// paused) and against IvshmemDevice, comparing every guest-visible result in order: configuration
// space, BAR0 registers, the MSI-X table and PBA in BAR1, and MSI deliveries (QEMU writes them into
// guest RAM; our device hands them to the transport, which the test writes into a RAM mirror).
//
// Skipped, with a console warning, when qemu-system-x86_64 (or, for the doorbell cases, python3
// with os.eventfd/socket.send_fds) is unavailable. QEMU_ABI_SEED=<n> changes the random seeds;
// QEMU_SYSTEM_X86_64=<path> picks another QEMU binary.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Rng as BaseRng } from '../support/rng.js';
import { IvshmemDevice } from '../../src/device/device.js';
import type { VmmTransport } from '../../src/device/transport.js';
import { IvshmemFixture, fixtureUnavailableReason } from '../support/ivshmem-fixture.js';
import { Qmp } from '../support/qmp.js';
import { QEMU_BAR0, QEMU_BAR1, QEMU_BAR2 } from '../support/qemu-peer.js';
import { DEFAULT_QEMU, QTest, qemuUnavailableReason } from '../support/qtest.js';

const QEMU = process.env.QEMU_SYSTEM_X86_64 ?? DEFAULT_QEMU;
const qemuMissing = qemuUnavailableReason(QEMU);
const fixtureMissing = qemuMissing === null ? fixtureUnavailableReason() : null;
if (qemuMissing !== null) {
  console.warn(`interop/qemu-abi.test.ts: skipping every differential test against QEMU: ${qemuMissing}`);
} else if (fixtureMissing !== null) {
  console.warn(
    `interop/qemu-abi.test.ts: skipping the ivshmem-doorbell tests (they need an fd-passing server): ${fixtureMissing}`,
  );
}

const SEED = Number(process.env.QEMU_ABI_SEED ?? 0x1b5eed);
const CORES = ['wasm', 'ts'] as const;
type Core = (typeof CORES)[number];

// MSI-X table entries point into this guest RAM window; deliveries are compared there.
const MSI_WINDOW = 0x100000;
const MSI_WINDOW_SIZE = 0x400;
const SHM_SIZE = 1 << 20;

// ---- deterministic random numbers (mulberry32) ----

class Rng extends BaseRng {
  /** A value for a guest write: mostly random 32/64-bit, sometimes a corner value. */
  value(): bigint {
    if (this.chance(0.1)) return this.pick([0n, 0xffffffffffffffffn, 0x80000000n, 0xffffffffn, 1n]);
    return this.chance(0.5) ? BigInt(this.u32()) : this.u64();
  }
}

type Size = 1 | 2 | 4 | 8;
const SIZES: readonly Size[] = [1, 2, 4, 8];
const h = (v: number | bigint) => `0x${v.toString(16)}`;
const mask = (size: number, v: bigint) => BigInt.asUintN(size * 8, v);

// ---- mismatch bookkeeping: every comparison is recorded, the test asserts none differed ----

class Diff {
  readonly found: string[] = [];
  count = 0;
  readonly #recent: string[] = [];
  constructor(readonly name: string) {}

  /** Logs a guest access, so a mismatch can show what led to it. */
  op(text: string): void {
    this.#recent.push(text);
    if (this.#recent.length > 10) this.#recent.shift();
  }

  eq(what: string, qemu: bigint | number, ours: bigint | number, core: Core | 'config'): void {
    if (BigInt(qemu) === BigInt(ours)) return;
    this.count++;
    if (this.found.length >= 40) return;
    const context = this.found.length < 3 ? `; preceding accesses: ${this.#recent.join(' ; ')}` : '';
    this.found.push(`${what} [${core}]: QEMU ${h(qemu)}, ours ${h(ours)}${context}`);
  }

  note(text: string): void {
    this.count++;
    if (this.found.length < 40) this.found.push(text);
  }

  assertNone(): void {
    const summary =
      this.count === 0 ? [] : [`${this.name}: ${this.count} mismatches (seed ${SEED}); first ones:`, ...this.found];
    expect(summary).toEqual([]);
  }
}

// ---- our side: a device per core, with a transport that writes MSIs into a RAM mirror ----

interface Ours {
  core: Core;
  dev: IvshmemDevice;
  /** The mirror of guest RAM at MSI_WINDOW. */
  ram: Uint8Array;
  /** Deliveries outside the window, and unexpected INTx changes: always a mismatch. */
  stray: string[];
  /** Doorbell rings waiting to be fed back as own-vector events (self-interrupts). */
  rings: number[];
}

async function makeOurs(core: Core, mode: 'plain' | 'doorbell', vectors?: number, id?: number): Promise<Ours> {
  const ram = new Uint8Array(MSI_WINDOW_SIZE);
  const stray: string[] = [];
  const rings: number[] = [];
  const transport: VmmTransport = {
    setIrqLevel: (level) => stray.push(`INTx level ${level}`),
    sendMsi: (address, data, vector) => {
      if (address >= MSI_WINDOW && address + 4 <= MSI_WINDOW + MSI_WINDOW_SIZE) {
        new DataView(ram.buffer).setUint32(address - MSI_WINDOW, data >>> 0, true);
      } else {
        stray.push(`MSI vector ${vector} to ${h(address)} data ${h(data)}`);
      }
    },
  };
  const dev = await IvshmemDevice.create(
    mode === 'plain'
      ? { mode, memory: new ArrayBuffer(SHM_SIZE), transport, core }
      : {
          mode,
          vectors,
          id,
          memory: new ArrayBuffer(SHM_SIZE),
          transport,
          core,
          doorbell: { ring: (handle) => rings.push(handle) },
        },
  );
  if (mode === 'doorbell') {
    // QEMU's peer table holds the device's own vectors too, so a doorbell to itself interrupts it.
    for (let v = 0; v < (vectors ?? 1); v++) dev.connectPeerVector(id ?? 0, v);
  }
  return { core, dev, ram, stray, rings };
}

/** A guest read of one of our devices (bigint, as qtest answers). */
function ourRead(o: Ours, bar: number, offset: number, size: Size): bigint {
  return BigInt(o.dev.mmioRead(bar, offset, size));
}

/** A guest write; doorbell rings to the device itself loop back as own-vector events. */
function ourWrite(o: Ours, bar: number, offset: number, size: Size, value: bigint): void {
  o.dev.mmioWrite(bar, offset, size, size === 8 ? value : Number(value));
  for (const handle of o.rings.splice(0)) o.dev.fireVector(handle);
}

// ---- comparisons shared by the cases ----

async function readConfigBytes(q: QTest): Promise<number[]> {
  const bytes: number[] = [];
  for (let i = 0; i < 256; i++) bytes.push(await q.cfgRead(i, 1));
  return bytes;
}

async function compareConfigSpace(q: QTest, ours: Ours[], diff: Diff, when: string): Promise<void> {
  const bytes = await readConfigBytes(q);
  for (const o of ours) {
    for (let i = 0; i < 256; i++) diff.eq(`${when}: config byte ${h(i)}`, bytes[i], o.dev.configRead(i, 1), o.core);
  }
  for (let i = 0; i < 256; i += 4) {
    const dword = await q.cfgRead(i, 4);
    for (const o of ours) diff.eq(`${when}: config dword ${h(i)}`, dword, o.dev.configRead(i, 4), o.core);
    for (const k of [0, 1, 2]) {
      const word = await q.cfgRead(i + k, 2);
      for (const o of ours) diff.eq(`${when}: config word ${h(i + k)}`, word, o.dev.configRead(i + k, 2), o.core);
    }
  }
}

async function cfgWriteBoth(
  q: QTest,
  ours: Ours[],
  diff: Diff,
  offset: number,
  size: 1 | 2 | 4,
  value: number,
): Promise<void> {
  diff.op(`cfg write${size} ${h(offset)}=${h(value)}`);
  await q.cfgWrite(offset, size, value);
  for (const o of ours) {
    o.dev.configWrite(offset, size, value);
    for (const handle of o.rings.splice(0)) o.dev.fireVector(handle);
  }
}

async function cfgReadBoth(q: QTest, ours: Ours[], diff: Diff, offset: number, size: 1 | 2 | 4): Promise<void> {
  diff.op(`cfg read${size} ${h(offset)}`);
  const v = await q.cfgRead(offset, size);
  for (const o of ours) diff.eq(`cfg read${size} ${h(offset)}`, v, o.dev.configRead(offset, size), o.core);
}

/** Reset state, BAR sizing, then write masks (0xff into every non-BAR byte, one at a time). */
async function configCase(q: QTest, ours: Ours[], diff: Diff): Promise<void> {
  await compareConfigSpace(q, ours, diff, 'at reset');
  for (let at = 0x10; at <= 0x24; at += 4) {
    await cfgWriteBoth(q, ours, diff, at, 4, 0xffffffff);
    await cfgReadBoth(q, ours, diff, at, 4);
  }
  await compareConfigSpace(q, ours, diff, 'after BAR sizing');
  for (let at = 0x10; at <= 0x24; at += 4) await cfgWriteBoth(q, ours, diff, at, 4, 0);
  for (let i = 0; i < 256; i++) {
    if (i >= 0x10 && i < 0x28) continue;
    await cfgWriteBoth(q, ours, diff, i, 1, 0xff);
    await cfgReadBoth(q, ours, diff, i, 1);
  }
  await compareConfigSpace(q, ours, diff, 'after writing 0xff to every non-BAR byte');
  // Wider writes: 0 into every non-BAR dword, then 0xa55a into words at offsets 0, 1, 2 of each.
  for (let i = 0; i < 256; i += 4) {
    if (i >= 0x10 && i < 0x28) continue;
    await cfgWriteBoth(q, ours, diff, i, 4, 0);
    await cfgReadBoth(q, ours, diff, i, 4);
  }
  for (let i = 0; i < 256; i++) {
    if ((i & 3) === 3 || (i >= 0x10 && i < 0x28)) continue;
    await cfgWriteBoth(q, ours, diff, i, 2, 0xa55a);
    await cfgReadBoth(q, ours, diff, i & ~3, 4);
  }
  await compareConfigSpace(q, ours, diff, 'after word and dword writes');
}

/** Places BAR0, BAR1 (doorbell) and BAR2 and turns on memory decoding (and bus mastering). */
async function mapBars(q: QTest, ours: Ours[], diff: Diff, doorbell: boolean, command: number): Promise<void> {
  await cfgWriteBoth(q, ours, diff, 0x10, 4, QEMU_BAR0);
  if (doorbell) await cfgWriteBoth(q, ours, diff, 0x14, 4, QEMU_BAR1);
  await cfgWriteBoth(q, ours, diff, 0x18, 4, QEMU_BAR2);
  await cfgWriteBoth(q, ours, diff, 0x1c, 4, 0);
  await cfgWriteBoth(q, ours, diff, 0x04, 2, command);
  for (const o of ours) {
    expect(o.dev.barAddress(0)).toBe(BigInt(QEMU_BAR0));
    if (doorbell) expect(o.dev.barAddress(1)).toBe(BigInt(QEMU_BAR1));
  }
}

const BAR_BASE = [QEMU_BAR0, QEMU_BAR1];

async function mmioReadBoth(
  q: QTest,
  ours: Ours[],
  diff: Diff,
  bar: 0 | 1,
  offset: number,
  size: Size,
  label = '',
): Promise<void> {
  diff.op(`read${size} bar${bar}+${h(offset)}`);
  const v = await q.read(BAR_BASE[bar] + offset, size);
  for (const o of ours) diff.eq(`${label}read${size} bar${bar}+${h(offset)}`, v, ourRead(o, bar, offset, size), o.core);
}

async function mmioWriteBoth(
  q: QTest,
  ours: Ours[],
  diff: Diff,
  bar: 0 | 1,
  offset: number,
  size: Size,
  value: bigint,
): Promise<void> {
  const v = mask(size, value);
  diff.op(`write${size} bar${bar}+${h(offset)}=${h(v)}`);
  await q.write(BAR_BASE[bar] + offset, size, v);
  for (const o of ours) ourWrite(o, bar, offset, size, v);
}

// ---- the cases ----

describe.skipIf(qemuMissing !== null)('ivshmem against QEMU (qtest differential)', () => {
  let tmp = '';
  const cleanups: Array<() => Promise<void>> = [];

  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), 'ivshmem-qemu-abi-'));
  });

  afterAll(async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
    if (tmp !== '') rmSync(tmp, { recursive: true, force: true });
  }, 30_000);

  let instances = 0;
  /** With `qmp`, QEMU also gets a QMP socket (for system_reset) and the client is returned. */
  async function startQemu(deviceArgs: string[], qmp: boolean): Promise<{ q: QTest; qmp: Qmp | null }> {
    const qmpPath = join(tmp, `qmp-${instances++}.sock`);
    const q = await QTest.start([...deviceArgs, ...(qmp ? ['-qmp', `unix:${qmpPath},server=on,wait=off`] : [])], {
      qemu: QEMU,
    });
    cleanups.push(() => q.close());
    let client: Qmp | null = null;
    if (qmp) {
      client = await Qmp.connect(qmpPath);
      const c = client;
      cleanups.push(async () => c.close());
    }
    return { q, qmp: client };
  }

  const PLAIN_ARGS = ['-object', `memory-backend-ram,id=mb1,size=${SHM_SIZE}`, '-device', 'ivshmem-plain,memdev=mb1'];
  async function startPlain(): Promise<QTest> {
    const { q } = await startQemu(PLAIN_ARGS, false);
    await q.findDevice();
    return q;
  }

  async function startDoorbell(
    vectors: number,
    id: number,
    withQmp = false,
  ): Promise<{ q: QTest; fixture: IvshmemFixture; qmp: Qmp | null }> {
    const socketPath = join(tmp, `server-${instances++}.sock`);
    const fixture = await IvshmemFixture.start(socketPath, id, vectors, SHM_SIZE);
    cleanups.push(() => fixture.close());
    const { q, qmp } = await startQemu(
      ['-chardev', `socket,id=c0,path=${socketPath}`, '-device', `ivshmem-doorbell,chardev=c0,vectors=${vectors}`],
      withQmp,
    );
    await fixture.ready();
    await q.findDevice();
    return { q, fixture, qmp };
  }

  async function plainDevices(): Promise<Ours[]> {
    return Promise.all(CORES.map((core) => makeOurs(core, 'plain')));
  }

  it('plain: config space at reset, BAR sizing and write masks equal', async () => {
    const q = await startPlain();
    const ours = await plainDevices();
    const diff = new Diff('plain config');
    try {
      await configCase(q, ours, diff);
    } finally {
      await q.close();
    }
    diff.assertNone();
  });

  it('plain: BAR0 seeded random sequence of 3200 accesses equal (wasm and ts cores)', async () => {
    const q = await startPlain();
    const ours = await plainDevices();
    const diff = new Diff('plain BAR0 sequence');
    const rng = new Rng(SEED);
    const seen = new Set<string>();
    try {
      await mapBars(q, ours, diff, false, 0x2);
      for (let step = 0; step < 3200; step++) {
        const size = rng.pick(SIZES);
        const limit = 0x100 - size + 1;
        const offset = rng.chance(0.75) ? rng.int(Math.min(0x18, limit)) : rng.int(limit);
        const write = rng.chance(0.45);
        seen.add(`${write ? 'w' : 'r'}${size}@${offset & 7}`);
        if (write) await mmioWriteBoth(q, ours, diff, 0, offset, size, rng.value());
        else await mmioReadBoth(q, ours, diff, 0, offset, size, `step ${step}: `);
      }
      // Registers at the end, as a last check of the state both sides arrived at.
      for (const offset of [0, 4, 8, 12]) await mmioReadBoth(q, ours, diff, 0, offset, 4, 'final: ');
    } finally {
      await q.close();
    }
    // Every size at every alignment (offset mod 8) was read and written.
    for (const kind of ['r', 'w'])
      for (const size of SIZES) for (let a = 0; a < 8; a++) expect(seen.has(`${kind}${size}@${a}`)).toBe(true);
    diff.assertNone();
  });

  it('plain: BAR0 sweeps of every offset and size equal (wasm and ts cores)', async () => {
    const q = await startPlain();
    const ours = await plainDevices();
    const diff = new Diff('plain BAR0 sweeps');
    const pattern = 0xf1e2d3c4b5a69788n;
    try {
      await mapBars(q, ours, diff, false, 0x2);
      for (let offset = 0; offset < 0x100; offset++) {
        for (const size of SIZES) {
          if (offset + size > 0x100) continue;
          // Write sweep: clear both registers, write the pattern, read IntrMask and IntrStatus.
          await mmioWriteBoth(q, ours, diff, 0, 0, 4, 0n);
          await mmioWriteBoth(q, ours, diff, 0, 4, 4, 0n);
          await mmioWriteBoth(q, ours, diff, 0, offset, size, pattern);
          await mmioReadBoth(q, ours, diff, 0, 0, 4, `after write${size} at ${h(offset)}: `);
          await mmioReadBoth(q, ours, diff, 0, 4, 4, `after write${size} at ${h(offset)}: `);
          // Read sweep: known register values, the read, then whether IntrStatus was cleared.
          await mmioWriteBoth(q, ours, diff, 0, 0, 4, 0x11223344n);
          await mmioWriteBoth(q, ours, diff, 0, 4, 4, 0x55667788n);
          await mmioReadBoth(q, ours, diff, 0, offset, size, 'read sweep: ');
          await mmioReadBoth(q, ours, diff, 0, 4, 4, `after read${size} at ${h(offset)}: `);
          await mmioReadBoth(q, ours, diff, 0, 0, 4, `after read${size} at ${h(offset)}: `);
        }
      }
    } finally {
      await q.close();
    }
    diff.assertNone();
  });

  it('plain: BAR2 (shared memory) random accesses of every size and alignment equal', async () => {
    const q = await startPlain();
    const ours = await plainDevices();
    const diff = new Diff('plain BAR2');
    const rng = new Rng(SEED ^ 0xba2);
    try {
      await mapBars(q, ours, diff, false, 0x2);
      for (let step = 0; step < 400; step++) {
        const size = rng.pick(SIZES);
        const offset = rng.chance(0.8) ? rng.int(64) : rng.int(SHM_SIZE - 8);
        diff.op(`${step}: ${size}@${h(offset)}`);
        if (rng.chance(0.5)) {
          const v = mask(size, rng.value());
          await q.write(QEMU_BAR2 + offset, size, v);
          for (const o of ours) o.dev.mmioWrite(2, offset, size, size === 8 ? v : Number(v));
        } else {
          const v = await q.read(QEMU_BAR2 + offset, size);
          for (const o of ours)
            diff.eq(`step ${step}: read${size} bar2+${h(offset)}`, v, BigInt(o.dev.mmioRead(2, offset, size)), o.core);
        }
      }
      const head = await q.memRead(QEMU_BAR2, 72);
      for (const o of ours) {
        const mine = new Uint8Array(o.dev.sharedMemory.buffer, 0, 72);
        head.forEach((b, i) => diff.eq(`final BAR2 byte ${h(i)}`, b, mine[i], o.core));
      }
    } finally {
      await q.close();
    }
    diff.assertNone();
  });

  it('plain: state after a system reset equal (QMP system_reset vs reset())', async () => {
    const { q, qmp } = await startQemu(PLAIN_ARGS, true);
    await q.findDevice();
    const ours = await plainDevices();
    const diff = new Diff('plain reset');
    try {
      await mapBars(q, ours, diff, false, 0x407);
      await cfgWriteBoth(q, ours, diff, 0x0c, 1, 0x10);
      await cfgWriteBoth(q, ours, diff, 0x3c, 1, 0x0b);
      await cfgWriteBoth(q, ours, diff, 0x80, 4, 0x12345678);
      await mmioWriteBoth(q, ours, diff, 0, 0, 8, 0x0000123480000001n);
      diff.op('system reset');
      await qmp!.systemReset();
      for (const o of ours) o.dev.reset();
      await compareConfigSpace(q, ours, diff, 'after system reset');
      for (const o of ours) diff.eq('BAR0 mapped after reset', 0, o.dev.barAddress(0) === null ? 0 : 1, o.core);
      await mapBars(q, ours, diff, false, 0x2);
      for (const offset of [0, 4, 8, 12]) await mmioReadBoth(q, ours, diff, 0, offset, 4, 'after reset: ');
    } finally {
      await q.close();
    }
    diff.assertNone();
  });

  describe.skipIf(fixtureMissing !== null)('ivshmem-doorbell', () => {
    const ID = 0x2a5;

    async function doorbellDevices(vectors: number): Promise<Ours[]> {
      return Promise.all(CORES.map((core) => makeOurs(core, 'doorbell', vectors, ID)));
    }

    it('vectors=3: config space at reset, BAR sizing and write masks equal', async () => {
      const { q, fixture } = await startDoorbell(3, ID);
      const ours = await doorbellDevices(3);
      const diff = new Diff('doorbell vectors=3 config');
      try {
        await configCase(q, ours, diff);
      } finally {
        await q.close();
        await fixture.close();
      }
      diff.assertNone();
    });

    it('vectors=200: config space, BAR sizing, write masks and BAR1 layout equal', async () => {
      const { q, fixture } = await startDoorbell(200, ID);
      const ours = await doorbellDevices(200);
      const diff = new Diff('doorbell vectors=200');
      try {
        await configCase(q, ours, diff);
        await cfgWriteBoth(q, ours, diff, 0x42, 2, 0); // MSI-X off again
        await mapBars(q, ours, diff, true, 0x6);
        // Table end (200 entries = 0xc80 bytes), the PBA right after it, the BAR's end.
        for (const offset of [
          0, 0x8, 0xc, 0xc70, 0xc78, 0xc7c, 0xc80, 0xc84, 0xc88, 0xc90, 0xc94, 0xc98, 0xca0, 0xff8, 0xffc,
        ]) {
          await mmioReadBoth(q, ours, diff, 1, offset, 4);
          if (offset % 8 === 0) await mmioReadBoth(q, ours, diff, 1, offset, 8);
        }
        for (const offset of [0, 4, 8, 12]) await mmioReadBoth(q, ours, diff, 0, offset, 4);
      } finally {
        await q.close();
        await fixture.close();
      }
      diff.assertNone();
    });

    it('vectors=3: seeded random BAR1/config/doorbell/firing sequence of 1500 steps equal, MSIs included', async () => {
      await doorbellSequence(3, 1500, [0, 1, 2]);
    });

    it('vectors=200: seeded random sequence of 600 steps equal (PBA after the table, several PBA dwords)', async () => {
      await doorbellSequence(200, 600, [0, 1, 31, 32, 63, 64, 130, 199]);
    });

    it('vectors=3: pending vectors sharing one MSI address are delivered in vector order', async () => {
      const { q, fixture } = await startDoorbell(3, ID);
      const ours = await doorbellDevices(3);
      const diff = new Diff('doorbell delivery order');
      const check = async (after: string) => {
        const word = await q.read(MSI_WINDOW, 4);
        const pba = await q.read(QEMU_BAR1 + 0x800, 4);
        for (const o of ours) {
          diff.eq(
            `${after}: MSI word at ${h(MSI_WINDOW)}`,
            word,
            new DataView(o.ram.buffer).getUint32(0, true),
            o.core,
          );
          diff.eq(`${after}: PBA`, pba, ourRead(o, 1, 0x800, 4), o.core);
          for (const s of o.stray.splice(0)) diff.note(`${after} [${o.core}]: ${s}`);
        }
        await q.write(MSI_WINDOW, 4, 0n);
        for (const o of ours) o.ram.fill(0);
        return word;
      };
      const delivered: bigint[] = [];
      const fire = async (v: number) => {
        diff.op(`fire ${v}`);
        await fixture.fire(v);
        for (const o of ours) o.dev.fireVector(v);
      };
      try {
        await mapBars(q, ours, diff, true, 0x6);
        for (let v = 0; v < 3; v++) {
          await mmioWriteBoth(q, ours, diff, 1, v * 16, 8, BigInt(MSI_WINDOW));
          await mmioWriteBoth(q, ours, diff, 1, v * 16 + 8, 8, BigInt(0xd00d0000 + v)); // data, unmasked
        }
        for (const order of [
          [0, 1, 2],
          [2, 1, 0],
          [1, 2, 0],
        ]) {
          // Function mask: pend in `order`, then clear the function mask.
          await cfgWriteBoth(q, ours, diff, 0x42, 2, 0xc000);
          for (const v of order) await fire(v);
          await check(`fired ${order} under the function mask`);
          await cfgWriteBoth(q, ours, diff, 0x42, 2, 0x8000);
          delivered.push(await check(`function mask cleared after firing ${order}`));
          // MSI-X disabled while pending bits exist, then enabled again.
          await cfgWriteBoth(q, ours, diff, 0x42, 2, 0xc000);
          for (const v of order) await fire(v);
          await cfgWriteBoth(q, ours, diff, 0x42, 2, 0x4000);
          await check(`MSI-X disabled with ${order} pending`);
          await cfgWriteBoth(q, ours, diff, 0x42, 2, 0x8000);
          delivered.push(await check(`MSI-X enabled with ${order} pending`));
          // Bus mastering off: an unmasked vector's message is lost, a masked one still pends.
          await cfgWriteBoth(q, ours, diff, 0x04, 2, 0x2);
          for (const v of order) await fire(v);
          await check(`fired ${order} without bus mastering`);
          await cfgWriteBoth(q, ours, diff, 0x42, 2, 0xc000);
          await fire(order[0]);
          await cfgWriteBoth(q, ours, diff, 0x42, 2, 0x8000);
          await check(`function mask cleared without bus mastering`);
          await cfgWriteBoth(q, ours, diff, 0x04, 2, 0x6);
          await check(`bus mastering back on`);
        }
      } finally {
        await q.close();
        await fixture.close();
      }
      // QEMU did deliver the pending messages in those steps (else the comparison proves little).
      expect(delivered.every((w) => w !== 0n)).toBe(true);
      diff.assertNone();
    });

    it('vectors=3: state after a system reset equal, and interrupts work after it', async () => {
      const { q, fixture, qmp } = await startDoorbell(3, ID, true);
      const ours = await doorbellDevices(3);
      const diff = new Diff('doorbell reset');
      const fire = async (v: number) => {
        diff.op(`fire ${v}`);
        await fixture.fire(v);
        for (const o of ours) o.dev.fireVector(v);
      };
      const compareMsi = async (after: string) => {
        const ram = await q.memRead(MSI_WINDOW, 64);
        for (const o of ours) {
          for (let i = 0; i < 64; i += 4) {
            diff.eq(
              `${after}: MSI word at ${h(MSI_WINDOW + i)}`,
              new DataView(ram.buffer).getUint32(i, true),
              new DataView(o.ram.buffer).getUint32(i, true),
              o.core,
            );
          }
          for (const s of o.stray.splice(0)) diff.note(`${after} [${o.core}]: ${s}`);
        }
        await q.memWrite(MSI_WINDOW, new Uint8Array(64));
        for (const o of ours) o.ram.fill(0);
      };
      try {
        await mapBars(q, ours, diff, true, 0x406);
        await cfgWriteBoth(q, ours, diff, 0x0c, 1, 0x10);
        await cfgWriteBoth(q, ours, diff, 0x3c, 1, 0x0b);
        await cfgWriteBoth(q, ours, diff, 0x80, 4, 0x12345678);
        await cfgWriteBoth(q, ours, diff, 0x42, 2, 0xc000);
        for (let v = 0; v < 3; v++) {
          await mmioWriteBoth(q, ours, diff, 1, v * 16, 8, BigInt(MSI_WINDOW + 16 * v));
          await mmioWriteBoth(q, ours, diff, 1, v * 16 + 8, 8, BigInt(0xbeef0000 + v));
        }
        await mmioWriteBoth(q, ours, diff, 0, 0, 8, 0x0000123480000001n);
        await fire(0);
        await fire(2);
        for (let i = 0; i < 8; i += 4) await mmioReadBoth(q, ours, diff, 1, 0x800 + i, 4, 'before reset: ');
        diff.op('system reset');
        await qmp!.systemReset();
        for (const o of ours) o.dev.reset();
        await compareMsi('system reset');
        await compareConfigSpace(q, ours, diff, 'after system reset');
        await mapBars(q, ours, diff, true, 0x6);
        for (const offset of [0, 4, 8, 12]) await mmioReadBoth(q, ours, diff, 0, offset, 4, 'after reset: ');
        for (let i = 0; i < 48; i += 4) await mmioReadBoth(q, ours, diff, 1, i, 4, 'table after reset: ');
        for (let i = 0; i < 8; i += 4) await mmioReadBoth(q, ours, diff, 1, 0x800 + i, 4, 'PBA after reset: ');
        // The vectors still work: disabled → lost, masked → pending, unmasked → delivered.
        await fire(1);
        await compareMsi('fire 1 after reset, MSI-X disabled');
        await cfgWriteBoth(q, ours, diff, 0x42, 2, 0x8000);
        await fire(1);
        await mmioReadBoth(q, ours, diff, 1, 0x800, 4, 'fire 1 after reset, masked: PBA ');
        await mmioWriteBoth(q, ours, diff, 1, 16, 8, BigInt(MSI_WINDOW + 16));
        await mmioWriteBoth(q, ours, diff, 1, 24, 8, 0xfeed0001n);
        await compareMsi('entry 1 unmasked after reset');
        await mmioReadBoth(q, ours, diff, 1, 0x800, 4, 'after unmask: PBA ');
        await fire(1);
        await compareMsi('fire 1 after reset, unmasked');
        // A doorbell to itself still loops back after the reset.
        await mmioWriteBoth(q, ours, diff, 0, 12, 4, BigInt(((ID << 16) | 1) >>> 0));
        await fixture.settle();
        await compareMsi('doorbell to itself after reset');
      } finally {
        await q.close();
        await fixture.close();
      }
      diff.assertNone();
    });

    /**
     * A random mix of BAR1 accesses (table, hole, PBA), Message Control and command writes, config
     * reads, vector firings (through the server's eventfds), doorbell writes to itself, BAR0 reads.
     * After everything that may deliver or pend an interrupt, QEMU's MSI writes in guest RAM and
     * its PBA are compared with ours. `hot` vectors are fired and rewritten more often.
     */
    async function doorbellSequence(vectors: number, steps: number, hot: readonly number[]): Promise<void> {
      const TABLE = vectors * 16;
      const PBA = Math.max(0x800, TABLE);
      const PBA_BYTES = Math.ceil(vectors / 64) * 8;
      const BAR1_SIZE = vectors <= 128 ? 0x1000 : 2 ** Math.ceil(Math.log2(TABLE + PBA_BYTES));
      const { q, fixture } = await startDoorbell(vectors, ID);
      const ours = await doorbellDevices(vectors);
      const diff = new Diff(`doorbell vectors=${vectors} sequence`);
      const rng = new Rng(SEED ^ (0x5eed0000 + vectors));
      const stats = { fires: 0, rings: 0, deliveries: 0, pendingSeen: 0 };
      for (const o of ours) expect(o.dev.bars[1].size).toBe(BAR1_SIZE);

      /** QEMU's MSI writes (guest RAM) and PBA against ours; then both RAM windows are cleared. */
      async function compareInterrupts(after: string): Promise<void> {
        const ram = await q.memRead(MSI_WINDOW, MSI_WINDOW_SIZE);
        const pba: bigint[] = [];
        for (let i = 0; i < PBA_BYTES; i += 8) pba.push(await q.read(QEMU_BAR1 + PBA + i, 8));
        if (pba.some((w) => w !== 0n)) stats.pendingSeen++;
        let dirty = false;
        for (const o of ours) {
          for (let i = 0; i < MSI_WINDOW_SIZE; i += 4) {
            const qv = ram[i] | (ram[i + 1] << 8) | (ram[i + 2] << 16) | (ram[i + 3] * 2 ** 24);
            const ov = o.ram[i] | (o.ram[i + 1] << 8) | (o.ram[i + 2] << 16) | (o.ram[i + 3] * 2 ** 24);
            diff.eq(`after ${after}: MSI word in RAM at ${h(MSI_WINDOW + i)}`, qv, ov, o.core);
            if (qv !== 0 || ov !== 0) dirty = true;
          }
          pba.forEach((w, k) => diff.eq(`after ${after}: PBA qword ${k}`, w, ourRead(o, 1, PBA + 8 * k, 8), o.core));
          for (const s of o.stray.splice(0)) diff.note(`after ${after} [${o.core}]: ${s} (QEMU cannot have done this)`);
        }
        if (dirty) {
          stats.deliveries++;
          await q.memWrite(MSI_WINDOW, new Uint8Array(MSI_WINDOW_SIZE));
          for (const o of ours) o.ram.fill(0);
        }
      }

      // Keeps every table address inside the RAM window (0x00100000 + 4-aligned, < 1 KiB), and
      // clears the mask bit of vector control more often than not.
      function sanitize(offset: number, size: number, value: bigint): bigint {
        let out = 0n;
        for (let i = 0; i < size; i++) {
          let byte = Number((value >> BigInt(8 * i)) & 0xffn);
          const at = offset + i;
          if (at < TABLE) {
            const e = at % 16;
            if (e === 0) byte &= 0xfc;
            else if (e === 1) byte &= (MSI_WINDOW_SIZE - 1) >> 8;
            else if (e === 2) byte = (MSI_WINDOW >>> 16) & 0xff;
            else if (e < 8) byte = 0;
            else if (e === 12 && rng.chance(0.6)) byte &= 0xfe;
          }
          out |= BigInt(byte) << BigInt(8 * i);
        }
        return out;
      }

      function bar1Offset(size: number): number {
        const r = rng.u32() / 2 ** 32;
        let offset: number;
        if (r < 0.3)
          offset = rng.pick(hot) * 16 + rng.int(16); // hot table entries
        else if (r < 0.45)
          offset = rng.int(TABLE + 8); // anywhere in the table, a little past it
        else if (r < 0.6) {
          // between table and PBA (when there is a gap), and past the PBA
          offset = rng.pick([
            TABLE + rng.int(32),
            PBA - 16 + rng.int(16),
            PBA + PBA_BYTES + rng.int(16),
            rng.int(BAR1_SIZE),
          ]);
        } else if (r < 0.95) offset = PBA + rng.int(PBA_BYTES + 8);
        else offset = rng.int(BAR1_SIZE);
        return Math.max(0, Math.min(offset, BAR1_SIZE - size));
      }

      async function fire(v: number, tag: string): Promise<void> {
        diff.op(`fire ${v}`);
        stats.fires++;
        await fixture.fire(v);
        for (const o of ours) o.dev.fireVector(v);
        await compareInterrupts(`${tag} (fire ${v})`);
      }

      try {
        await mapBars(q, ours, diff, true, 0x6);
        for (const offset of [0, 4, 8, 12]) await mmioReadBoth(q, ours, diff, 0, offset, 4, 'registers: ');
        await mmioReadBoth(q, ours, diff, 0, 8, 1, 'IVPosition: ');
        await mmioReadBoth(q, ours, diff, 0, 8, 8, 'IVPosition: ');
        // With MSI-X disabled a fired vector is consumed and lost (also waits for QEMU's vector setup).
        for (const v of new Set([...hot, vectors - 1])) await fire(v, 'MSI-X disabled');
        // Table entries: address in the RAM window, distinct data, still masked.
        for (let v = 0; v < vectors; v++) {
          await mmioWriteBoth(q, ours, diff, 1, v * 16, 4, BigInt(MSI_WINDOW + ((4 * v) % MSI_WINDOW_SIZE)));
          await mmioWriteBoth(q, ours, diff, 1, v * 16 + 4, 4, 0n);
          await mmioWriteBoth(q, ours, diff, 1, v * 16 + 8, 4, BigInt(0xa5a50000 + 0x101 * (v + 1)));
        }
        // Every other hot vector starts unmasked.
        for (let i = 0; i < hot.length; i += 2) await mmioWriteBoth(q, ours, diff, 1, hot[i] * 16 + 12, 4, 0n);
        for (let i = 0; i < TABLE; i += 4) await mmioReadBoth(q, ours, diff, 1, i, 4, 'table after setup: ');

        for (let step = 0; step < steps; step++) {
          const r = rng.u32() / 2 ** 32;
          const tag = `step ${step}`;
          if (r < 0.3) {
            const size = rng.pick(SIZES);
            await mmioReadBoth(q, ours, diff, 1, bar1Offset(size), size, `${tag}: `);
          } else if (r < 0.52) {
            const size = rng.pick(SIZES);
            const offset = bar1Offset(size);
            await mmioWriteBoth(q, ours, diff, 1, offset, size, sanitize(offset, size, mask(size, rng.value())));
            await compareInterrupts(`${tag} (BAR1 write)`);
          } else if (r < 0.62) {
            const control = rng.pick([0, 0x8000, 0xc000, 0x4000, 0x8000, 0x8000, 0x8000]);
            const form = rng.int(4);
            if (form === 0) await cfgWriteBoth(q, ours, diff, 0x42, 2, control | rng.int(0x4000));
            else if (form === 1) await cfgWriteBoth(q, ours, diff, 0x43, 1, (control >>> 8) | rng.int(0x40));
            else if (form === 2) await cfgWriteBoth(q, ours, diff, 0x40, 4, ((control << 16) | rng.int(0x10000)) >>> 0);
            else await cfgWriteBoth(q, ours, diff, 0x42, 2, control);
            await compareInterrupts(`${tag} (Message Control write)`);
          } else if (r < 0.67) {
            const command = 0x2 | (rng.chance(0.6) ? 0x4 : 0) | (rng.chance(0.2) ? 0x400 : 0);
            if (rng.chance(0.3)) await cfgWriteBoth(q, ours, diff, 0x04, 1, command & 0xff);
            else await cfgWriteBoth(q, ours, diff, 0x04, 2, command);
            await compareInterrupts(`${tag} (command write)`);
          } else if (r < 0.72) {
            const [offset, size] = rng.pick([
              [0x04, 2],
              [0x06, 2],
              [0x40, 4],
              [0x42, 2],
              [0x43, 1],
              [0x44, 4],
              [0x48, 4],
            ] as const);
            await cfgReadBoth(q, ours, diff, offset, size);
          } else if (r < 0.87) {
            await fire(rng.chance(0.8) ? rng.pick(hot) : rng.int(vectors), tag);
          } else if (r < 0.95) {
            // Doorbell to itself (or to an absent peer): bits 31..16 peer, 7..0 vector, 15..8 ignored.
            const dest = rng.chance(0.85) ? ID : rng.int(0x10000);
            const vector = rng.chance(0.7) ? rng.pick(hot) : rng.pick([vectors, vectors + 1, 255, rng.int(256)]);
            const value = ((dest << 16) | (vector & 0xff) | (rng.chance(0.25) ? rng.int(256) << 8 : 0)) >>> 0;
            stats.rings++;
            if (rng.chance(0.15)) await mmioWriteBoth(q, ours, diff, 0, 8, 8, BigInt(value) << 32n);
            else await mmioWriteBoth(q, ours, diff, 0, 12, 4, BigInt(value));
            await fixture.settle();
            await compareInterrupts(`${tag} (doorbell ${h(value)})`);
          } else {
            const size = rng.pick(SIZES);
            await mmioReadBoth(q, ours, diff, 0, rng.int(0x14), size, `${tag}: `);
          }
        }
        for (let i = 0; i < TABLE; i += 4) await mmioReadBoth(q, ours, diff, 1, i, 4, 'final table: ');
        for (let i = 0; i < PBA_BYTES; i += 4) await mmioReadBoth(q, ours, diff, 1, PBA + i, 4, 'final PBA: ');
        await cfgReadBoth(q, ours, diff, 0x40, 4);
      } finally {
        await q.close();
        await fixture.close();
      }
      // The sequence must have exercised deliveries and pending bits, or it proves little.
      expect(stats.deliveries).toBeGreaterThan(steps / 100);
      expect(stats.pendingSeen).toBeGreaterThan(steps / 100);
      diff.assertNone();
    }
  });
});
