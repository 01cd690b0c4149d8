// fd-passing UNIX sockets with ivshmem's framing: 8-byte little-endian int64 messages with at
// most one fd each; reassembly of messages split across writes, with the fd staying on its
// message; extra fds closed; a peer that hangs up mid-message; listen/accept/connect and how
// listen treats what is already at its path; coded errors.
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { native } from '../../src/os/binding.js';
import { EventFd } from '../../src/os/eventfd.js';
import { UnixListener, UnixSocket } from '../../src/os/unix-socket.js';
import { MESSAGE_BYTES } from '../../src/protocol/messages.js';
import { codeOf } from '../support/error-code.js';
import { expectNoFdLeak, openFdCount } from '../support/fd-leaks.js';

const O_CLOEXEC = 0o2000000;
const fdFlags = (fd: number) =>
  parseInt(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8').match(/^flags:\s+(\d+)/m)![1], 8);

/** Little-endian int64 bytes of a value, as the framing puts it on the wire. */
function wire(value: bigint): Uint8Array {
  const bytes = new Uint8Array(MESSAGE_BYTES);
  new DataView(bytes.buffer).setBigInt64(0, value, true);
  return bytes;
}

describe('native UNIX sockets', () => {
  expectNoFdLeak();
  let dir = '';
  // Everything a test opens is closed after it, pass or fail.
  let handles: { close(): void }[] = [];
  const own = <T extends { close(): void }>(h: T): T => {
    handles.push(h);
    return h;
  };
  const pair = (): [UnixSocket, UnixSocket] => {
    const [a, b] = UnixSocket.pair();
    return [own(a), own(b)];
  };
  const eventfd = () => own(EventFd.create());
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'ivshmem-native-socket-'));
  });
  afterEach(() => {
    for (const h of handles.reverse()) h.close();
    handles = [];
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('carries int64 values, negative and large, as 8 little-endian bytes', () => {
    const [a, b] = pair();
    const values = [0n, 1n, -1n, 65535n, 1n << 32n, 2n ** 62n + 3n, -(2n ** 63n), 2n ** 63n - 1n];
    for (const v of values) expect(a.send(v)).toBe(true);
    expect(a.send(-1)).toBe(true); // numbers too
    const got = values.concat([-1n]).map(() => b.receive());
    expect(got).toEqual(values.concat([-1n]).map((value) => ({ value, fd: -1 })));
    expect(b.receive()).toBeNull();
    // The byte layout, seen from the raw side.
    a.sendRaw(Uint8Array.of(0xff, 0xff, 0, 0, 0, 0, 0, 0));
    a.sendRaw(new Uint8Array(8).fill(0xff));
    expect(b.receive()).toEqual({ value: 65535n, fd: -1 });
    expect(b.receive()).toEqual({ value: -1n, fd: -1 });
    b.send(0x0102030405060708n);
    const raw = new Uint8Array(8);
    expect(native().recv(a.fd, raw, 0, 8)).toEqual({ bytes: 8, fds: [] });
    expect([...raw]).toEqual([...wire(0x0102030405060708n)]);
    expect(native().recv(a.fd, raw, 0, 8)).toEqual({ bytes: -1, fds: [] }); // nothing waiting
  });

  it('passes an eventfd that works on arrival (close-on-exec), and -1 for a message without one', () => {
    const [a, b] = pair();
    const e = eventfd();
    a.send(5, e.fd);
    a.send(6);
    const first = b.receive()!;
    expect(first.value).toBe(5n);
    expect(first.fd).toBeGreaterThanOrEqual(0);
    expect(first.fd).not.toBe(e.fd);
    const received = own(EventFd.adopt(first.fd));
    expect(fdFlags(received.fd) & O_CLOEXEC).toBe(O_CLOEXEC);
    received.signal();
    received.signal();
    expect(e.drain()).toBe(2);
    e.signal();
    expect(received.drain()).toBe(1);
    expect(b.receive()).toEqual({ value: 6n, fd: -1 });
  });

  it('keeps the first of two fds sent with one message and closes the second', () => {
    const [a, b] = pair();
    const e1 = eventfd();
    const e2 = eventfd();
    const base = openFdCount();
    a.sendRaw(wire(9n), [e1.fd, e2.fd]);
    const m = b.receive()!;
    expect(m.value).toBe(9n);
    expect(b.extraFdsClosed).toBe(1);
    expect(openFdCount()).toBe(base + 1); // only the kept one is open
    const kept = own(EventFd.adopt(m.fd));
    kept.signal();
    expect(e1.drain()).toBe(1);
    expect(e2.drain()).toBe(0);
  });

  it('reassembles a message written one byte at a time', () => {
    const [a, b] = pair();
    const bytes = wire(-123456789n);
    for (let i = 0; i < MESSAGE_BYTES; i++) {
      expect(b.receive()).toBeNull();
      expect(b.partialBytes).toBe(i);
      expect(a.sendRaw(bytes.subarray(i, i + 1))).toBe(1);
    }
    expect(b.receive()).toEqual({ value: -123456789n, fd: -1 });
    expect(b.partialBytes).toBe(0);
  });

  it('keeps an fd sent with the first byte of a split message with that message', () => {
    const [a, b] = pair();
    const e = eventfd();
    a.send(1n);
    const second = wire(2n);
    a.sendRaw(second.subarray(0, 1), [e.fd]);
    expect(b.receive()).toEqual({ value: 1n, fd: -1 });
    expect(b.receive()).toBeNull();
    expect(b.partialBytes).toBe(1);
    a.sendRaw(second.subarray(1, 5));
    expect(b.receive()).toBeNull();
    a.sendRaw(second.subarray(5));
    a.send(3n);
    const m = b.receive()!;
    expect(m.value).toBe(2n);
    own(EventFd.adopt(m.fd)).signal();
    expect(e.drain()).toBe(1);
    expect(b.receive()).toEqual({ value: 3n, fd: -1 });
    // The same when every piece is already queued before the first read.
    a.sendRaw(wire(4n).subarray(0, 3));
    a.sendRaw(wire(4n).subarray(3));
    a.sendRaw(wire(5n).subarray(0, 1), [e.fd]);
    a.sendRaw(wire(5n).subarray(1));
    expect(b.receive()).toEqual({ value: 4n, fd: -1 });
    const m5 = b.receive()!;
    expect(m5.value).toBe(5n);
    expect(m5.fd).toBeGreaterThanOrEqual(0);
    native().close(m5.fd);
  });

  it('reports end of stream after the last complete message, and a peer hanging up mid-message', () => {
    const [a, b] = pair();
    a.send(11);
    a.close();
    expect(b.receive()).toEqual({ value: 11n, fd: -1 });
    expect(b.eof).toBe(false);
    expect(b.receive()).toBeNull();
    expect(b.eof).toBe(true);
    expect(b.receive()).toBeNull();

    const [c, d] = UnixSocket.pair();
    const e = eventfd();
    const base = openFdCount();
    c.sendRaw(wire(12n).subarray(0, 3), [e.fd]);
    c.close();
    expect(d.receive()).toBeNull();
    expect(d.eof).toBe(true);
    expect(d.partialBytes).toBe(3);
    expect(openFdCount()).toBe(base); // c closed, d holds the fd that came with the partial message
    d.close(); // ... and closes it
    expect(openFdCount()).toBe(base - 2);
  });

  it('says when the socket buffer is full (send returns false, nothing half-sent)', () => {
    const [a, b] = pair();
    let sent = 0;
    while (a.send(sent) && sent < 1_000_000) sent++;
    expect(sent).toBeGreaterThan(0);
    expect(sent).toBeLessThan(1_000_000);
    for (let i = 0; i < sent; i++) expect(b.receive()?.value).toBe(BigInt(i));
    expect(b.receive()).toBeNull();
    expect(b.partialBytes).toBe(0);
  });

  it('throws EPIPE or ECONNRESET, coded, on a send after the peer closed', () => {
    const [a, b] = pair();
    b.close();
    let err: Record<string, unknown> = {};
    try {
      a.send(1);
    } catch (e) {
      err = e as Record<string, unknown>;
    }
    expect(['EPIPE', 'ECONNRESET']).toContain(err.code);
    expect(err).toMatchObject({ syscall: 'sendmsg' });
    expect(err.errno).toBeLessThan(0);
    // The same when the peer closed with our data still unread.
    const [c, d] = pair();
    c.send(1);
    c.close();
    expect(['EPIPE', 'ECONNRESET']).toContain(codeOf(() => d.send(2)));
  });

  it('listens, accepts and connects on a path, both ways, with an fd', () => {
    const path = join(dir, 'server.sock');
    const listener = own(UnixListener.listen(path));
    expect(statSync(path).isSocket()).toBe(true);
    expect(listener.accept()).toBeNull();
    const client = own(UnixSocket.connect(path));
    const server = own(listener.accept()!);
    expect(server).not.toBeNull();
    expect(listener.accept()).toBeNull();
    const e = eventfd();
    server.send(0, e.fd);
    client.send(-7);
    const m = client.receive()!;
    expect(m.value).toBe(0n);
    own(EventFd.adopt(m.fd)).signal();
    expect(e.drain()).toBe(1);
    expect(server.receive()).toEqual({ value: -7n, fd: -1 });
    listener.close();
    expect(() => statSync(path)).toThrow(); // close() removed the path
    expect(codeOf(() => UnixSocket.connect(path))).toBe('ENOENT');
  });

  it('refuses to replace a regular file (EEXIST) and leaves it untouched', () => {
    const path = join(dir, 'not-a-socket');
    writeFileSync(path, 'precious');
    expect(codeOf(() => UnixListener.listen(path))).toBe('EEXIST');
    expect(readFileSync(path, 'utf8')).toBe('precious');
  });

  it('refuses a socket someone listens on (EADDRINUSE)', () => {
    const path = join(dir, 'live.sock');
    const first = own(UnixListener.listen(path));
    let err: Record<string, unknown> = {};
    try {
      own(UnixListener.listen(path));
    } catch (e) {
      err = e as Record<string, unknown>;
    }
    expect(err).toMatchObject({ code: 'EADDRINUSE', syscall: 'bind', path });
    // The first listener still works.
    own(UnixSocket.connect(path));
    expect(own(first.accept()!)).not.toBeNull();
  });

  it('replaces a stale socket that nobody listens on', () => {
    const path = join(dir, 'stale.sock');
    native().close(native().listen(path, 1)); // closed without unlinking: a socket file, no listener
    expect(statSync(path).isSocket()).toBe(true);
    expect(codeOf(() => UnixSocket.connect(path))).toBe('ECONNREFUSED');
    const listener = own(UnixListener.listen(path));
    own(UnixSocket.connect(path));
    expect(own(listener.accept()!)).not.toBeNull();
  });

  it('refuses a path longer than sun_path holds (ENAMETOOLONG)', () => {
    const long = join(dir, 'x'.repeat(120));
    expect(long.length).toBeGreaterThan(107);
    expect(codeOf(() => UnixListener.listen(long))).toBe('ENAMETOOLONG');
    expect(codeOf(() => UnixSocket.connect(long))).toBe('ENAMETOOLONG');
    // 107 bytes still fit (plus the NUL).
    const fits = dir + '/' + 'y'.repeat(107 - dir.length - 1);
    expect(fits.length).toBe(107);
    own(UnixListener.listen(fits));
  });

  it('refuses use after close with ERR_IVSHMEM_CLOSED', () => {
    const [a, b] = UnixSocket.pair();
    own(b);
    a.close();
    a.close();
    expect(() => a.send(1)).toThrow(expect.objectContaining({ code: 'ERR_IVSHMEM_CLOSED' }));
    expect(() => a.receive()).toThrow(expect.objectContaining({ code: 'ERR_IVSHMEM_CLOSED' }));
  });
});
