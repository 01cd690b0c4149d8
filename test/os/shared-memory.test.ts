// Real shared memory: POSIX shm objects by name, files, memfds (with shrink sealing), unlinked
// files in a directory (the hugetlbfs way), QEMU's size rules, MAP_SHARED mappings (one object,
// two views), unmapping and closing; and IvshmemDevice with BAR2 on such memory.
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IvshmemDevice } from '../../src/device/device.js';
import type { IvshmemDeviceOptions } from '../../src/device/options.js';
import { native } from '../../src/os/binding.js';
import { SharedMemory } from '../../src/os/shared-memory.js';
import { codeOf } from '../support/error-code.js';
import { expectNoFdLeak, openFdCount } from '../support/fd-leaks.js';

const PAGE = 4096;
let nameCount = 0;
const names: string[] = [];
/** A POSIX shm name unique to this run; removed in afterAll whatever happens. */
function shmName(): string {
  const name = `ivshmem-native-test-${process.pid}-${nameCount++}`;
  names.push(name);
  return name;
}
const devShm = (name: string) => `/dev/shm/${name}`;
/** Whether this process has a mapping of the given file (by path, as /proc/self/maps shows it). */
const mapped = (path: string) =>
  readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .some((l) => l.endsWith(` ${path}`));

let tempDir = '';
beforeAll(() => {
  tempDir = mkdtempSync(join(tmpdir(), 'ivshmem-native-memory-'));
});
afterAll(() => {
  for (const name of names) rmSync(devShm(name), { force: true });
  rmSync(tempDir, { recursive: true, force: true });
});

describe('SharedMemory objects', () => {
  expectNoFdLeak();
  const open: SharedMemory[] = [];
  const track = (m: SharedMemory) => {
    open.push(m);
    return m;
  };
  afterAll(() => {
    for (const m of open) m.close();
  });

  it('creates a POSIX shm object by name exclusively, with its mode, and opens it again', () => {
    const name = shmName();
    const mode = 0o640 & ~process.umask();
    const a = track(SharedMemory.open({ shm: name, create: 'always', mode: 0o640 }, { size: 2 * PAGE }));
    expect(a.size).toBe(2 * PAGE);
    const st = statSync(devShm(name));
    expect(st.size).toBe(2 * PAGE);
    expect(st.mode & 0o777).toBe(mode);
    expect(codeOf(() => SharedMemory.open({ shm: name, create: 'always' }, { size: PAGE }))).toBe('EEXIST');
    // "/name" and "name" are the same object; an existing object is opened with its size.
    const b = track(SharedMemory.open({ shm: `/${name}`, create: 'never' }));
    expect(b.size).toBe(2 * PAGE);
    expect(codeOf(() => SharedMemory.open({ shm: `${name}-missing`, create: 'never' }))).toBe('ENOENT');
  });

  it('gives MAP_SHARED views: what one mapping writes, another mapping of the object reads', () => {
    const name = shmName();
    const a = track(SharedMemory.open({ shm: name }, { size: PAGE }));
    const b = track(SharedMemory.open({ shm: name }));
    const va = new Uint32Array(a.map());
    const vb = new Uint32Array(b.map());
    expect(a.map()).toBe(a.map()); // one mapping per object, made on first use
    va[0] = 0xdeadbeef;
    va[1023] = 42;
    expect(vb[0]).toBe(0xdeadbeef);
    expect(vb[1023]).toBe(42);
    vb[5] = 7;
    expect(va[5]).toBe(7);
    // The file itself holds the bytes too (it is the object, not a copy).
    expect(readFileSync(devShm(name)).readUInt32LE(0)).toBe(0xdeadbeef);
  });

  it('maps a file by path, growing an empty file to the size asked for', () => {
    const path = join(tempDir, 'bar2.bin');
    const m = track(SharedMemory.open({ path }, { size: 3 * PAGE }));
    expect(statSync(path).size).toBe(3 * PAGE);
    new Uint8Array(m.map())[3 * PAGE - 1] = 0x5a;
    expect(readFileSync(path)[3 * PAGE - 1]).toBe(0x5a);
  });

  it("follows QEMU's size rules", () => {
    const path = join(tempDir, 'sizes.bin');
    writeFileSync(path, Buffer.alloc(PAGE, 1));
    // A non-empty object is used from its start: a smaller size is fine, a larger one refused.
    const part = track(SharedMemory.open({ path }, { size: PAGE / 2 }));
    expect(part.size).toBe(PAGE / 2);
    expect(part.map().byteLength).toBe(PAGE / 2);
    expect(statSync(path).size).toBe(PAGE); // not truncated
    expect(codeOf(() => SharedMemory.open({ path }, { size: 2 * PAGE }))).toBe('ERR_IVSHMEM_INVALID_SIZE');
    // An empty object needs a size.
    const empty = join(tempDir, 'empty.bin');
    writeFileSync(empty, '');
    expect(codeOf(() => SharedMemory.open({ path: empty }))).toBe('ERR_IVSHMEM_INVALID_SIZE');
    expect(codeOf(() => SharedMemory.open({ path: empty }, { size: 0 }))).toBe('ERR_IVSHMEM_INVALID_SIZE');
    // Sizes that are not byte counts, or beyond the 47-bit address space, before anything opens.
    for (const size of [2 ** 47, 2 ** 50, -1, 1.5, NaN]) {
      expect(
        codeOf(() => SharedMemory.open({ path: empty }, { size })),
        String(size),
      ).toBe('ERR_IVSHMEM_INVALID_SIZE');
    }
    expect(statSync(empty).size).toBe(0);
    const grown = track(SharedMemory.open({ path: empty }, { size: PAGE }));
    expect(grown.size).toBe(PAGE);
    expect(statSync(empty).size).toBe(PAGE);
  });

  it('leaves nothing behind when an object cannot be created for want of a size', () => {
    const name = shmName();
    expect(codeOf(() => SharedMemory.open({ shm: name }))).toBe('ENOENT');
    expect(codeOf(() => SharedMemory.open({ shm: name, create: 'always' }))).toBe('ERR_IVSHMEM_INVALID_SIZE');
    expect(codeOf(() => SharedMemory.open({ path: join(tempDir, 'never-made') }))).toBe('ENOENT');
    expect(readdirSync('/dev/shm')).not.toContain(name);
    expect(readdirSync(tempDir)).not.toContain('never-made');
  });

  it('seals a memfd against shrinking (EPERM) while it may still grow', () => {
    const n = native();
    const sealed = track(SharedMemory.open({ memfd: 'sealed', seal: true }, { size: 4 * PAGE }));
    expect(sealed.size).toBe(4 * PAGE);
    expect(codeOf(() => n.ftruncate(sealed.fd, PAGE))).toBe('EPERM');
    expect(n.fstat(sealed.fd).size).toBe(4 * PAGE);
    n.ftruncate(sealed.fd, 8 * PAGE);
    expect(n.fstat(sealed.fd).size).toBe(8 * PAGE);
    const loose = track(SharedMemory.open({ memfd: 'unsealed' }, { size: 4 * PAGE }));
    n.ftruncate(loose.fd, PAGE);
    expect(n.fstat(loose.fd).size).toBe(PAGE);
    expect(codeOf(() => SharedMemory.open({ memfd: 'no-size' }))).toBe('ERR_IVSHMEM_INVALID_SIZE');
  });

  it('makes an unlinked file in a directory (hugetlbfs style): the directory stays empty', () => {
    const dir = mkdtempSync(join(tempDir, 'huge-'));
    const m = track(SharedMemory.open({ hugetlbfs: dir }, { size: 2 * PAGE }));
    expect(readdirSync(dir)).toEqual([]);
    expect(native().fstat(m.fd)).toMatchObject({ size: 2 * PAGE, isFile: true });
    const view = new Uint8Array(m.map());
    view[PAGE] = 9;
    expect(view[PAGE]).toBe(9);
    expect(codeOf(() => SharedMemory.open({ hugetlbfs: join(dir, 'missing') }, { size: PAGE }))).toBe('ENOENT');
  });

  it('adopts an fd and sizes it by fstat', () => {
    const n = native();
    const fd = n.memfdCreate('adopted', false);
    n.ftruncate(fd, 12345);
    const m = track(SharedMemory.adopt(fd));
    expect(m.fd).toBe(fd);
    expect(m.size).toBe(12345);
    expect(m.map().byteLength).toBe(12345);
  });

  it('unmaps by detaching the buffer (length 0, no fault), maps again on demand, and close unmaps', () => {
    const name = shmName();
    const m = SharedMemory.open({ shm: name }, { size: PAGE });
    const before = m.map();
    const view = new Uint8Array(before);
    view[0] = 77;
    expect(mapped(devShm(name))).toBe(true);
    m.unmap();
    expect(before.byteLength).toBe(0);
    expect(view.length).toBe(0);
    expect(view[0]).toBeUndefined(); // reads nothing rather than touching unmapped memory
    expect(mapped(devShm(name))).toBe(false);
    m.unmap(); // nothing mapped: nothing to do
    const again = m.map();
    expect(again).not.toBe(before);
    expect(new Uint8Array(again)[0]).toBe(77);
    m.close();
    expect(again.byteLength).toBe(0);
    expect(mapped(devShm(name))).toBe(false);
    expect(() => m.map()).toThrow(expect.objectContaining({ code: 'ERR_IVSHMEM_CLOSED' }));
    m.close();
  });

  it('unlinks a POSIX name while the memory lives on for whoever has it mapped', () => {
    const name = shmName();
    const m = track(SharedMemory.open({ shm: name }, { size: PAGE }));
    new Uint8Array(m.map())[1] = 3;
    m.unlink();
    expect(readdirSync('/dev/shm')).not.toContain(name);
    expect(new Uint8Array(m.map())[1]).toBe(3);
    expect(codeOf(() => m.unlink())).toBe('ENOENT');
  });

  it('still unmaps a mapping whose address an earlier, collected mapping had', async () => {
    // The kernel reuses a freshly unmapped address; the first buffer's finalizer must not make
    // the addon forget the second mapping.
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const m = track(SharedMemory.open({ memfd: 'reuse' }, { size: 16 * PAGE }));
    for (let round = 0; round < 3; round++) {
      m.map();
      m.unmap();
      const second = m.map();
      for (let i = 0; i < 3; i++) {
        gc();
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      m.unmap();
      expect(second.byteLength).toBe(0);
    }
  });
});

describe('IvshmemDevice on real shared memory', () => {
  expectNoFdLeak();
  const transport = { setIrqLevel: () => {}, sendMsi: () => {} };
  const create = (options: Partial<IvshmemDeviceOptions>) =>
    IvshmemDevice.create({ transport, ...options } as IvshmemDeviceOptions);

  it("backs a plain device's BAR2 with a shm object that a second device sees", async () => {
    const name = shmName();
    const a = await create({ memory: { shm: name }, size: 64 * 1024 });
    const b = await create({ memory: { shm: name } }); // size from the object
    try {
      expect(a.sharedMemory.size).toBe(64 * 1024);
      expect(a.sharedMemory.fd).toBeGreaterThanOrEqual(0);
      expect(b.sharedMemory.size).toBe(64 * 1024);
      expect(a.bars.find((bar) => bar.index === 2)?.size).toBe(64 * 1024);
      a.mmioWrite(2, 0x100, 4, 0x12345678);
      a.mmioWrite(2, 0xfff8, 8, 0x0102030405060708n);
      expect(b.mmioRead(2, 0x100, 4)).toBe(0x12345678);
      expect(b.mmioRead(2, 0xfff8, 8)).toBe(0x0102030405060708n);
      expect(new DataView(b.sharedMemory.buffer).getUint32(0x100, true)).toBe(0x12345678);
      b.mmioWrite(2, 0x20, 1, 0xab);
      expect(a.mmioRead(2, 0x20, 1)).toBe(0xab);
      expect(statSync(devShm(name)).size).toBe(64 * 1024);
    } finally {
      a.close();
      b.close();
    }
  });

  it('works on a memfd and on an unlinked file in a directory', async () => {
    const dir = mkdtempSync(join(tempDir, 'dev-huge-'));
    for (const memory of [{ memfd: 'bar2' }, { hugetlbfs: dir }]) {
      const d = await create({ memory, size: 8192 });
      try {
        d.mmioWrite(2, 8188, 4, 0xcafef00d);
        expect(d.mmioRead(2, 8188, 4)).toBe(0xcafef00d);
        expect(d.mmioRead(2, 8190, 4)).toBe(0); // beyond BAR2: invalid, reads 0
      } finally {
        d.close();
      }
    }
    expect(readdirSync(dir)).toEqual([]);
  });

  it('refuses sizes a BAR cannot have, with ERR_IVSHMEM_INVALID_SIZE, and keeps no fd', async () => {
    const base = openFdCount();
    const odd = shmName();
    writeFileSync(devShm(odd), Buffer.alloc(3000));
    const small = shmName();
    writeFileSync(devShm(small), Buffer.alloc(4096));
    const fresh = shmName();
    const refusals: [string, Partial<IvshmemDeviceOptions>][] = [
      ['an existing 3000-byte object, no size', { memory: { shm: odd } }],
      ['an object smaller than the size', { memory: { shm: small }, size: 8192 }],
      ['size 0', { memory: { shm: fresh }, size: 0 }],
      ['size 3000', { memory: { shm: fresh }, size: 3000 }],
      ['size 2^47', { memory: { shm: fresh }, size: 2 ** 47 }],
      ['size 2^48', { memory: { memfd: 'huge' }, size: 2 ** 48 }],
    ];
    for (const [what, options] of refusals) {
      await expect(create(options), what).rejects.toMatchObject({
        code: 'ERR_IVSHMEM_INVALID_SIZE',
        name: 'IvshmemError',
      });
    }
    expect(openFdCount()).toBe(base);
    expect(statSync(devShm(odd)).size).toBe(3000);
    expect(statSync(devShm(small)).size).toBe(4096);
    expect(readdirSync('/dev/shm')).not.toContain(fresh);
    // The smaller object is fine at its own size.
    const d = await create({ memory: { shm: small }, size: 4096 });
    d.close();
  });

  it('keeps master semantics on shared memory', async () => {
    const name = shmName();
    const master = await create({ mode: 'doorbell', memory: { shm: name }, size: 4096, master: 'on' });
    const peer = await create({ mode: 'doorbell', memory: { shm: name }, id: 1 });
    try {
      expect(master.master).toBe(true);
      expect(master.migrationBlocker).toBeNull();
      const state = master.saveState();
      master.loadState(state);
      expect(peer.master).toBe(false);
      expect(peer.migrationBlocker).toMatch(/peer mode/);
      expect(() => peer.saveState()).toThrow(expect.objectContaining({ code: 'ERR_IVSHMEM_MIGRATION_BLOCKED' }));
      const auto = await create({ mode: 'doorbell', memory: { shm: name }, master: 'auto' });
      expect(auto.master).toBe(true);
      auto.close();
    } finally {
      master.close();
      peer.close();
    }
  });

  it('closes its fd and unmaps BAR2 on close()', async () => {
    const base = openFdCount();
    const name = shmName();
    const d = await create({ memory: { shm: name }, size: 4096 });
    const { fd, buffer } = d.sharedMemory;
    expect(openFdCount()).toBe(base + 1);
    expect(mapped(devShm(name))).toBe(true);
    expect(native().isOwnedFd(fd)).toBe(true);
    d.close();
    d.close();
    expect(openFdCount()).toBe(base);
    expect(native().isOwnedFd(fd)).toBe(false);
    expect(buffer.byteLength).toBe(0);
    expect(mapped(devShm(name))).toBe(false);
    expect(() => d.mmioRead(2, 0, 4)).toThrow(expect.objectContaining({ code: 'ERR_IVSHMEM_CLOSED' }));
    expect(statSync(devShm(name)).size).toBe(4096); // the object itself stays for other peers
  });
});
