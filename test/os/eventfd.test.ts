// The native addon's eventfds and its error conventions: counter semantics (signals add up, a
// drain reads and resets, an empty drain returns 0 at once), close-on-exec, single-owner handles
// (idempotent close, ERR_IVSHMEM_CLOSED after it), Node-style system errors (code, negative
// errno, syscall), argument errors, and eventfdDoorbell as a device's doorbell sink.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { IvshmemDevice } from '../../src/device/device.js';
import { native } from '../../src/os/binding.js';
import { EventFd, eventfdDoorbell } from '../../src/os/eventfd.js';
import { expectNoFdLeak } from '../support/fd-leaks.js';

const O_CLOEXEC = 0o2000000;
const O_NONBLOCK = 0o4000;

/** The open flags of one of our fds, as the kernel reports them. */
function fdFlags(fd: number): number {
  const line = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('flags:'));
  return parseInt(line!.split(/\s+/)[1], 8);
}

describe('native eventfd', () => {
  expectNoFdLeak();
  const open: EventFd[] = [];
  const make = () => {
    const e = EventFd.create();
    open.push(e);
    return e;
  };
  afterAll(() => {
    for (const e of open) e.close();
  });

  it('adds signals up and drains them all at once, then reads 0', () => {
    const e = make();
    e.signal();
    e.signal();
    e.signal();
    expect(e.drain()).toBe(3);
    expect(e.drain()).toBe(0);
    e.signal();
    expect(e.drain()).toBe(1);
  });

  it('never blocks: it is O_NONBLOCK, and draining an empty eventfd returns 0', () => {
    const e = make();
    for (let i = 0; i < 100; i++) expect(e.drain()).toBe(0);
    expect(fdFlags(e.fd) & O_NONBLOCK).toBe(O_NONBLOCK);
  });

  it('is close-on-exec: the flag is set and a spawned process does not inherit it', () => {
    const e = make();
    expect(fdFlags(e.fd) & O_CLOEXEC).toBe(O_CLOEXEC);
    const probe = spawnSync('sh', ['-c', `if [ -e /proc/$$/fd/${e.fd} ]; then echo inherited; else echo absent; fi`], {
      encoding: 'utf8',
      timeout: 10_000,
    });
    expect(probe.stdout.trim()).toBe('absent');
  });

  it("records the fd as the addon's own until it is closed", () => {
    const e = EventFd.create();
    const fd = e.fd;
    expect(native().isOwnedFd(fd)).toBe(true);
    e.close();
    expect(native().isOwnedFd(fd)).toBe(false);
  });

  it('closes once: a second close does nothing, and any use after close is ERR_IVSHMEM_CLOSED', () => {
    const e = EventFd.create();
    const fd = e.fd;
    e.close();
    expect(e.closed).toBe(true);
    expect(() => e.close()).not.toThrow();
    for (const use of [() => e.signal(), () => e.drain(), () => e.fd]) {
      expect(use).toThrow(expect.objectContaining({ code: 'ERR_IVSHMEM_CLOSED', name: 'IvshmemError' }));
    }
    // The number is really closed (nothing opened since, so nothing reused it).
    expect(() => native().eventfdSignal(fd)).toThrow(expect.objectContaining({ code: 'EBADF' }));
  });

  it('reports system errors as Node does: code, negative errno, syscall', () => {
    const n = native();
    const fd = n.eventfdCreate();
    n.close(fd);
    const caught = (f: () => unknown): Record<string, unknown> => {
      try {
        f();
      } catch (err) {
        return err as Record<string, unknown>;
      }
      throw new Error('no error was thrown');
    };
    const write = caught(() => n.eventfdSignal(fd));
    expect(write).toBeInstanceOf(Error);
    expect(write).toMatchObject({ code: 'EBADF', errno: -9, syscall: 'write' });
    expect(String(write.message)).toMatch(/^EBADF: .*, write$/);
    expect(caught(() => n.eventfdDrain(fd))).toMatchObject({ code: 'EBADF', errno: -9, syscall: 'read' });
    expect(caught(() => n.close(fd))).toMatchObject({ code: 'EBADF', errno: -9, syscall: 'close' });
    expect(caught(() => n.shmOpen('/ivshmem-test-no-such-object', false, false, 0o600))).toMatchObject({
      code: 'ENOENT',
      errno: -2,
      syscall: 'shm_open',
      path: '/ivshmem-test-no-such-object',
    });
  });

  it('refuses arguments of the wrong type with a TypeError coded ERR_INVALID_ARG_TYPE', () => {
    const n = native() as unknown as Record<string, (...args: unknown[]) => unknown>;
    const FdWatcher = native().FdWatcher as unknown as new (...args: unknown[]) => unknown;
    const calls: [string, () => unknown][] = [
      ['eventfdSignal()', () => n.eventfdSignal()],
      ['eventfdSignal("3")', () => n.eventfdSignal('3')],
      ['eventfdDrain(3n)', () => n.eventfdDrain(3n)],
      ['close(null)', () => n.close(null)],
      ['shmOpen(1, …)', () => n.shmOpen(1, true, false, 0o600)],
      ['shmOpen(name, "yes", …)', () => n.shmOpen('/x', 'yes', false, 0o600)],
      ['ftruncate(fd, "1")', () => n.ftruncate(0, '1')],
      ['mmap(fd, undefined)', () => n.mmap(0, undefined)],
      ['munmap({})', () => n.munmap({})],
      ['send(fd, "bytes", [])', () => n.send(0, 'bytes', [])],
      ['send(fd, bytes, ["3"])', () => n.send(0, new Uint8Array(8), ['3'])],
      ['recv(fd, [], 0, 8)', () => n.recv(0, [], 0, 8)],
      ['waitReadable([3], 0)', () => n.waitReadable([3], 0)],
      ['waitReadable(Uint32Array, 0)', () => n.waitReadable(new Uint32Array([3]), 0)],
      ['spinReadable(fds, "1")', () => n.spinReadable(new Int32Array([3]), '1')],
      ['new FdWatcher(fd, "yes", cb)', () => new FdWatcher(0, 'yes', () => {})],
      ['new FdWatcher(fd, true, null)', () => new FdWatcher(0, true, null)],
    ];
    for (const [what, call] of calls) {
      let err: unknown;
      try {
        call();
      } catch (e) {
        err = e;
      }
      expect(err, what).toBeInstanceOf(TypeError);
      expect(err, what).toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
    }
  });

  it('refuses numbers that are not integers in range rather than truncating them (NaN is not fd 0)', () => {
    const n = native();
    const e = make();
    for (const bad of [NaN, 1.5, -0.5, 2 ** 31, Infinity]) {
      expect(() => n.eventfdSignal(bad), String(bad)).toThrow(
        expect.objectContaining({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE' }),
      );
    }
    expect(() => n.ftruncate(e.fd, 2.5)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => n.ftruncate(e.fd, 2 ** 60)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => n.ftruncate(e.fd, 2n ** 64n)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(e.drain()).toBe(0); // nothing was signalled by the refused calls
  });

  it('eventfdDoorbell.ring writes 1 to the eventfd it is given', () => {
    const e = make();
    eventfdDoorbell.ring(e.fd);
    eventfdDoorbell.ring(e.fd);
    expect(e.drain()).toBe(2);
    expect(() => eventfdDoorbell.ring(1_000_000)).toThrow(expect.objectContaining({ code: 'EBADF', syscall: 'write' }));
  });

  it("is a device's doorbell sink: a guest doorbell write signals the peer's eventfd", async () => {
    const vectors = [make(), make()];
    const device = await IvshmemDevice.create({
      mode: 'doorbell',
      vectors: 2,
      memory: new ArrayBuffer(4096),
      transport: { setIrqLevel: () => {}, sendMsi: () => {} },
      doorbell: eventfdDoorbell,
    });
    try {
      for (const v of vectors) device.connectPeerVector(7, v.fd);
      device.mmioWrite(0, 0x0c, 4, (7 << 16) | 1);
      device.mmioWrite(0, 0x0c, 4, (7 << 16) | 1);
      device.mmioWrite(0, 0x0c, 4, (7 << 16) | 0);
      expect(vectors.map((v) => v.drain())).toEqual([1, 2]);
      expect(device.counters().doorbellsSent).toBe(3);
    } finally {
      device.close();
    }
  });
});
