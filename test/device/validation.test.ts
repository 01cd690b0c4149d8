// Every public entry point checks what it is given: wrong types, unknown keys, sizes nothing can
// use and fd numbers that are not what they claim get a coded error whose message names the
// value, and nothing is left behind (no object in /dev/shm, no fd, no crash of the process).
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { IvshmemClient } from '../../src/client/ivshmem-client.js';
import { IvshmemDevice } from '../../src/device/device.js';
import { native } from '../../src/os/binding.js';
import { EventFd } from '../../src/os/eventfd.js';
import { SharedMemory } from '../../src/os/shared-memory.js';
import { IvshmemServer } from '../../src/server/ivshmem-server.js';
import { openFdCount } from '../support/fd-leaks.js';
import { until } from '../support/until.js';

const transport = { setIrqLevel() {}, sendMsi() {} };
const shmPrefix = `ivshmem-test-validation-${process.pid}-`;
let n = 0;
const dir = mkdtempSync(join(tmpdir(), 'ivshmem-validation-'));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  for (const f of readdirSync('/dev/shm')) if (f.startsWith(shmPrefix)) rmSync(join('/dev/shm', f));
});

async function refusal(p: Promise<unknown>): Promise<{ code: unknown; message: string }> {
  try {
    await p;
  } catch (err) {
    return { code: (err as { code?: unknown }).code, message: (err as Error).message };
  }
  return { code: 'no error', message: '' };
}

function thrown(f: () => unknown): { code: unknown; message: string; name: string } {
  try {
    f();
  } catch (err) {
    return { code: (err as { code?: unknown }).code, message: (err as Error).message, name: (err as Error).name };
  }
  return { code: 'no error', message: '', name: '' };
}

describe('IvshmemDevice.create options', () => {
  it.each([
    [
      { mode: 'doorbell', vectors: '4', memory: new ArrayBuffer(4096), transport },
      'ERR_IVSHMEM_INVALID_VECTORS',
      'vectors must be a number, got the string "4"',
    ],
    [
      { mode: 'doorbell', vectorz: 4, memory: new ArrayBuffer(4096), transport },
      'ERR_IVSHMEM_INVALID_OPTION',
      'unknown option "vectorz"',
    ],
    [
      { mode: 'plain', memory: new ArrayBuffer(4096), size: '4096', transport },
      'ERR_IVSHMEM_INVALID_SIZE',
      'size must be a number, got the string "4096"',
    ],
    [
      { mode: 'plain', memory: new ArrayBuffer(4096), id: '1', transport },
      'ERR_IVSHMEM_INVALID_PEER',
      'id must be a number',
    ],
    [
      { mode: 'plain', memory: new ArrayBuffer(4096), legacy: 'yes', transport },
      'ERR_IVSHMEM_INVALID_OPTION',
      'legacy must be a boolean',
    ],
    [
      { mode: 'plain', memory: new ArrayBuffer(4096), wasmModule: {}, transport },
      'ERR_IVSHMEM_INVALID_OPTION',
      'wasmModule must be a WebAssembly.Module',
    ],
    [{ mode: 'plain', memory: new ArrayBuffer(8), transport }, 'ERR_IVSHMEM_INVALID_SIZE', 'below 16 bytes'],
    [
      { mode: 'plain', memory: new ArrayBuffer(4096), size: 1, transport },
      'ERR_IVSHMEM_INVALID_SIZE',
      'below 16 bytes',
    ],
    [undefined, 'ERR_IVSHMEM_INVALID_OPTION', 'options must be an object'],
  ])('refuses %o', async (options, code, text) => {
    const r = await refusal(IvshmemDevice.create(options as never));
    expect(r.code).toBe(code);
    expect(r.message).toContain(text);
  });

  it('takes the smallest BAR a PCI guest can size: 16 bytes', async () => {
    const d = await IvshmemDevice.create({ mode: 'plain', memory: new ArrayBuffer(16), transport });
    d.configWrite(0x18, 4, 0xffffffff); // size BAR2 as firmware does
    expect(d.configRead(0x18, 4) & ~0xf).toBe((~15 & 0xffffffff) | 0);
    d.close();
  });

  it('a size the process cannot map leaves no object and no fd behind, and the process lives on', async () => {
    const fds = openFdCount();
    for (const size of [2 ** 33, 2 ** 46]) {
      const name = `${shmPrefix}${n++}`;
      const r = await refusal(IvshmemDevice.create({ mode: 'plain', memory: { shm: name }, size, transport }));
      expect(r.code).toBe('ERR_IVSHMEM_INVALID_SIZE');
      expect(existsSync(`/dev/shm/${name}`)).toBe(false);
    }
    expect(openFdCount()).toBe(fds);
  });

  it('an object that existed before a failed create is left as it was', async () => {
    const name = `${shmPrefix}${n++}`;
    const existing = SharedMemory.open({ shm: name }, { size: 2 ** 33, create: 'always' });
    existing.close();
    const r = await refusal(IvshmemDevice.create({ mode: 'plain', memory: { shm: name }, size: 2 ** 33, transport }));
    expect(r.code).toBe('ERR_IVSHMEM_INVALID_SIZE');
    expect(existsSync(`/dev/shm/${name}`)).toBe(true);
  });

  it('the addon refuses a mapping larger than one ArrayBuffer can hold with a Node-style error', () => {
    const fd = native().memfdCreate('big', false);
    try {
      native().ftruncate(fd, 2 ** 33);
      const e = thrown(() => native().mmap(fd, 2 ** 33)) as { code: unknown; message: string };
      expect(e.code).toBe('EOVERFLOW');
      expect(e.message).toContain('mmap');
    } finally {
      native().close(fd);
    }
  });
});

describe('device accesses with values of the wrong type', () => {
  it('mmioWrite and configWrite refuse a value that is no number alike, and change nothing', async () => {
    const d = await IvshmemDevice.create({ mode: 'doorbell', vectors: 2, memory: new ArrayBuffer(4096), transport });
    const before = d.configRead(0x04, 2);
    const w = thrown(() => d.mmioWrite(0, 0, 4, '1' as never));
    const c = thrown(() => d.configWrite(0x04, 2, '6' as never));
    expect([w.code, w.name, c.code, c.name]).toEqual([
      'ERR_INVALID_ARG_TYPE',
      'TypeError',
      'ERR_INVALID_ARG_TYPE',
      'TypeError',
    ]);
    expect(w.message).toContain('got the string "1"');
    expect([d.mmioRead(0, 0, 4), d.configRead(0x04, 2)]).toEqual([0, before]);
    d.mmioWrite(0, 0, 4, 0xffff); // numbers and bigints still work
    d.mmioWrite(2, 0, 8, 0x0102030405060708n);
    expect([d.mmioRead(0, 0, 4), d.mmioRead(2, 0, 8)]).toEqual([0xffff, 0x0102030405060708n]);
    d.close();
  });
});

describe('adopting fd numbers', () => {
  it.each([-1, 0, 1, 2, 1.5, '3', 1 << 30])('EventFd.adopt(%o) is refused', (fd) => {
    expect(thrown(() => EventFd.adopt(fd as number)).code).toBe('ERR_IVSHMEM_INVALID_FD');
  });

  it('EventFd.adopt takes an eventfd and SharedMemory.adopt a memory object, and not each other', () => {
    const e = EventFd.create();
    const m = SharedMemory.open({ memfd: 'adopt' }, { size: 4096 });
    const refusedMemory = thrown(() => SharedMemory.adopt(e.fd));
    expect(refusedMemory.code).toBe('ERR_IVSHMEM_INVALID_FD');
    expect(refusedMemory.message).toContain('anon_inode:[eventfd]');
    expect(thrown(() => EventFd.adopt(m.fd)).code).toBe('ERR_IVSHMEM_INVALID_FD');
    expect(thrown(() => SharedMemory.adopt(0)).code).toBe('ERR_IVSHMEM_INVALID_FD');
    const adopted = EventFd.adopt(e.release());
    adopted.signal();
    expect(adopted.drain()).toBe(1);
    adopted.close();
    expect(SharedMemory.adopt(m.release()).size).toBe(4096);
  });
});

describe('IvshmemClient', () => {
  function serverOn(vectors: number, path = join(dir, `s${n++}.sock`)) {
    return IvshmemServer.start({ socketPath: path, memory: { shm: `${shmPrefix}${n++}` }, size: 4096, vectors });
  }

  it('checks connect arguments, and refuses to ring once closed', async () => {
    const server = serverOn(2);
    try {
      expect(await refusal(IvshmemClient.connect(server.socketPath, { vectorz: 2 } as never))).toMatchObject({
        code: 'ERR_IVSHMEM_INVALID_OPTION',
        message: expect.stringContaining('unknown option "vectorz"'),
      });
      expect(await refusal(IvshmemClient.connect(server.socketPath, { vectors: '2' } as never))).toMatchObject({
        code: 'ERR_IVSHMEM_INVALID_VECTORS',
        message: expect.stringContaining('got the string "2"'),
      });
      expect((await refusal(IvshmemClient.connect(3 as never))).code).toBe('ERR_INVALID_ARG_TYPE');
      const c = await IvshmemClient.connect(server.socketPath, { vectors: 2 });
      expect(thrown(() => c.ring('0' as never, 0)).code).toBe('ERR_INVALID_ARG_TYPE');
      c.ring(c.id, 1);
      c.close();
      for (const f of [() => c.ring(0, 0), () => c.ringAll(0), () => c.ringEveryone()]) {
        expect(thrown(f)).toMatchObject({ code: 'ERR_IVSHMEM_CLOSED', message: 'the client is closed' });
      }
    } finally {
      server.close();
    }
  });

  it('hangs up on a server with more vectors than it accepts, and a reconnecting client does not loop', async () => {
    const path = join(dir, `s${n++}.sock`);
    const wide = serverOn(4, path);
    const r = await refusal(IvshmemClient.connect(path, { vectors: 2 }));
    expect(r.code).toBe('ERR_IVSHMEM_TOO_MANY_VECTORS');
    wide.close();

    let narrow = serverOn(2, path);
    const c = await IvshmemClient.connect(path, { vectors: 2, reconnect: { intervalMs: 20 } });
    const closes: string[] = [];
    c.on('close', (reason) => closes.push(reason));
    narrow.close();
    narrow = serverOn(4, path);
    try {
      await until(() => closes.length > 0, 'the client giving up on the wide server', 5000);
      expect(closes[0]).toMatch(/refused the server: Too many eventfd/);
      const joins = narrow.stats().joins;
      await new Promise((resolve) => setTimeout(resolve, 200)); // ten intervals: time for a loop to show
      expect(narrow.stats().joins).toBe(joins);
      expect(closes).toHaveLength(1);
    } finally {
      c.close();
      narrow.close();
    }
  });
});
