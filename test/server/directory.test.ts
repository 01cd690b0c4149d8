// The peer directory and its peer side, over real MessagePorts: the setup stream in the ivshmem
// server's order, ids round-robin, a leave announced when a peer's port closes or its worker
// ends, a peer that talks dropped, and every bad option and bad message refused with a coded
// error while the other peers go on.
import { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { DirectoryConnection } from '../../src/protocol/directory-connection.js';
import type { PortLike } from '../../src/protocol/directory-messages.js';
import { PeerDirectory } from '../../src/server/directory.js';
import { until } from '../support/until.js';

const open: { close(): void }[] = [];
afterEach(() => {
  for (const o of open.splice(0)) o.close();
});

function directory(options: ConstructorParameters<typeof PeerDirectory>[0] = {}): PeerDirectory {
  const d = new PeerDirectory({ size: 4096, vectors: 2, ...options });
  open.push(d);
  return d;
}

/** Every message the port holds after a turn of the event loop, described by type and id. */
async function drain(port: PortLike): Promise<string[]> {
  const got: string[] = [];
  const on = (e: { data: unknown }) => {
    const m = e.data as { type: string; id?: number; version?: number };
    got.push(m.type === 'version' ? `version ${m.version}` : m.id === undefined ? m.type : `${m.type} ${m.id}`);
  };
  port.addEventListener('message', on);
  port.start();
  await new Promise((r) => setTimeout(r, 20));
  port.removeEventListener('message', on as never);
  return got;
}

/** A fake directory: the test posts what it likes on `far`. */
function channel(): { near: PortLike; far: PortLike } {
  const { port1, port2 } = new MessageChannel();
  open.push(port1, port2);
  return { near: port1 as unknown as PortLike, far: port2 as unknown as PortLike };
}

describe('peer directory', () => {
  it("sends each newcomer its setup in the server's order and tells the others of it", async () => {
    const d = directory();
    const first = d.connect();
    open.push(first);
    expect(await drain(first)).toEqual(['version 0', 'id 0', 'memory', 'peer 0']);
    const second = d.connect();
    open.push(second);
    expect(await drain(second)).toEqual(['version 0', 'id 1', 'memory', 'peer 0', 'peer 1']);
    expect(await drain(first)).toEqual(['peer 1']);
    expect(d.peerIds).toEqual([0, 1]);
  });

  it('gives every peer the same memory and its own signals; ids go round-robin', async () => {
    const d = directory();
    const a = await DirectoryConnection.connect(d.connect(), { vectors: 2 });
    const b = await DirectoryConnection.connect(d.connect(), { vectors: 2 });
    open.push(a, b);
    expect([a.id, b.id]).toEqual([0, 1]);
    new Uint8Array(a.memory)[100] = 42;
    expect(new Uint8Array(b.memory)[100]).toBe(42);
    b.peers.get(0)!.ring(0); // the same memory behind another SharedArrayBuffer object
    expect(a.own.take(0)).toBe(1);
    await until(() => a.peers.has(1), 'a hears of b');
    a.peers.get(1)!.ring(1);
    expect(b.own.take(1)).toBe(1);
    b.close();
    await until(() => !a.peers.has(1), 'a hears b leave');
    const c = await DirectoryConnection.connect(d.connect(), { vectors: 2 });
    open.push(c);
    expect(c.id, 'a left id is not handed out next').toBe(2);
  });

  it('announces a peer whose worker ends as gone, and drops one that sends anything', async () => {
    const d = directory();
    const leaves: [number, string][] = [];
    d.on('leave', (id, reason) => leaves.push([id, reason]));
    const a = await DirectoryConnection.connect(d.connect(), { vectors: 2 });
    open.push(a);
    const gone: number[] = [];
    a.on('peer-left', (id) => gone.push(id));

    const port = d.connect();
    const worker = new Worker(
      `const { workerData } = require('node:worker_threads'); workerData.port.start(); setInterval(() => {}, 1000);`,
      { eval: true, workerData: { port }, transferList: [port as never] },
    );
    await until(() => a.peers.has(1), 'a hears of the worker');
    await worker.terminate();
    await until(() => gone.includes(1), 'a hears the worker leave');

    const talker = d.connect();
    open.push(talker);
    talker.postMessage('hello');
    await until(() => leaves.length === 2, 'the talker is dropped');
    expect(leaves).toEqual([
      [1, 'its port closed'],
      [2, 'the peer sent a message'],
    ]);
    expect(d.peerIds).toEqual([0]);
  });

  it('refuses bad options with coded errors', () => {
    expect(() => new PeerDirectory({ size: 3000 })).toThrow(
      expect.objectContaining({ code: 'ERR_IVSHMEM_INVALID_SIZE' }),
    );
    expect(() => new PeerDirectory({ memory: new ArrayBuffer(4096) as never })).toThrow(
      expect.objectContaining({ code: 'ERR_IVSHMEM_INVALID_OPTION' }),
    );
    expect(() => new PeerDirectory({ vectors: 0 })).toThrow(
      expect.objectContaining({ code: 'ERR_IVSHMEM_INVALID_VECTORS' }),
    );
    const d = directory();
    d.close();
    expect(() => d.connect()).toThrow(expect.objectContaining({ code: 'ERR_IVSHMEM_CLOSED' }));
  });
});

describe('directory connection', () => {
  const setup = (far: PortLike, id: number, signals = new SharedArrayBuffer(12)) => {
    far.postMessage({ type: 'version', version: 0 });
    far.postMessage({ type: 'id', id });
    far.postMessage({ type: 'memory', memory: new SharedArrayBuffer(4096) });
    far.postMessage({ type: 'peer', id, signals });
  };

  it('refuses a bad setup with the code that names what was wrong', async () => {
    const cases: [string, (far: PortLike) => void, string][] = [
      ['a newer version', (far) => far.postMessage({ type: 'version', version: 1 }), 'ERR_IVSHMEM_PROTOCOL_VERSION'],
      ['not a message', (far) => far.postMessage(42), 'ERR_IVSHMEM_PROTOCOL_VALUE'],
      [
        'memory that is no SharedArrayBuffer',
        (far) => {
          far.postMessage({ type: 'version', version: 0 });
          far.postMessage({ type: 'id', id: 3 });
          far.postMessage({ type: 'memory', memory: new ArrayBuffer(4096) });
        },
        'ERR_IVSHMEM_PROTOCOL_SHM',
      ],
      [
        'an id out of range',
        (far) => (far.postMessage({ type: 'version', version: 0 }), far.postMessage({ type: 'id', id: 70000 })),
        'ERR_IVSHMEM_PROTOCOL_ID',
      ],
      [
        'more vectors than the device has',
        (far) => setup(far, 0, new SharedArrayBuffer(16)),
        'ERR_IVSHMEM_TOO_MANY_VECTORS',
      ],
      [
        'a port closed mid-join',
        (far) => (far.postMessage({ type: 'version', version: 0 }), far.close()),
        'ERR_IVSHMEM_PROTOCOL_EOF',
      ],
    ];
    for (const [what, send, code] of cases) {
      const { near, far } = channel();
      send(far);
      await expect(DirectoryConnection.connect(near, { vectors: 2 }), what).rejects.toMatchObject({ code });
    }
    const { near } = channel();
    await expect(DirectoryConnection.connect(near, { vectors: 2, setupTimeoutMs: 30 })).rejects.toMatchObject({
      code: 'ERR_IVSHMEM_PROTOCOL_TIMEOUT',
    });
  });

  it('reports a bad message after setup as a protocol error and keeps working', async () => {
    const { near, far } = channel();
    setup(far, 5);
    const conn = await DirectoryConnection.connect(near, { vectors: 2 });
    open.push(conn);
    const errors: string[] = [];
    conn.on('protocol-error', (err) => errors.push(err.code));
    far.postMessage({ type: 'peer', id: 7, signals: 'nope' });
    far.postMessage({ type: 'id', id: 9 });
    far.postMessage({ type: 'peer', id: 5, signals: new SharedArrayBuffer(12) });
    far.postMessage({ type: 'peer', id: 6, signals: new SharedArrayBuffer(12) });
    await until(() => conn.peers.has(6), 'the good announcement still arrives');
    expect(errors).toEqual(['ERR_IVSHMEM_PROTOCOL_PEER', 'ERR_IVSHMEM_PROTOCOL', 'ERR_IVSHMEM_PROTOCOL_PEER']);
    expect([...conn.peers.keys()]).toEqual([6]);
    far.close();
    await until(() => conn.directoryGone, 'the far end closing is the directory going away');
  });
});
