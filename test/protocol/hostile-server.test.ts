// A hostile ivshmem server against our client side (ServerConnection, IvshmemDevice with
// `server`): arbitrary byte streams split at arbitrary points with fds of every kind attached,
// fds of the wrong kind where eventfds or memory belong, memory that shrinks after we mapped it,
// a server that stalls, and one that floods us after setup. Every outcome is a coded error or a
// consistent connection; the process survives and gives back every fd.
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { IvshmemDevice } from '../../src/device/device.js';
import { IvshmemError } from '../../src/errors.js';
import { native } from '../../src/os/binding.js';
import { UnixListener, UnixSocket } from '../../src/os/unix-socket.js';
import { MAX_BAD_MESSAGES, ServerConnection } from '../../src/protocol/connection.js';
import { encodeMessage } from '../../src/protocol/messages.js';
import { deviceBundle } from '../support/device-bundle.js';
import { expectNoFdLeak, openFdCount, openFds } from '../support/fd-leaks.js';
import { until } from '../support/until.js';

const SETUP_MS = 150;
const transport = { setIrqLevel() {}, sendMsi() {} };
const tick = () => new Promise((r) => setImmediate(r));

let dir: string;
let n = 0;
const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

// ---- the fake server: our listener, and every kind of fd a server could attach ----

type FdKind =
  'eventfd' | 'memfd' | 'memfd-empty' | 'memfd-odd' | 'pipe' | 'socket' | 'file' | 'file-readonly' | 'devnull';
const FD_KINDS: FdKind[] = [
  'eventfd',
  'memfd',
  'memfd-empty',
  'memfd-odd',
  'pipe',
  'socket',
  'file',
  'file-readonly',
  'devnull',
];

/** Makes an fd of `kind`; returns it with its closer (the server closes its copy once sent). */
function makeFd(kind: FdKind): [number, () => void] {
  const nat = native();
  const closeNative = (fd: number): [number, () => void] => [fd, () => nat.close(fd)];
  const closeNode = (fd: number): [number, () => void] => [fd, () => closeSync(fd)];
  switch (kind) {
    case 'eventfd':
      return closeNative(nat.eventfdCreate());
    case 'memfd':
    case 'memfd-empty':
    case 'memfd-odd': {
      const fd = nat.memfdCreate('ivshmem-hostile', true);
      if (kind !== 'memfd-empty') nat.ftruncate(fd, kind === 'memfd' ? 4096 : 3000);
      return closeNative(fd);
    }
    case 'pipe':
      return closeNode(openSync(join(dir, 'fifo'), 'r+')); // a FIFO opened read-write: a pipe
    case 'socket': {
      const [a, b] = nat.socketPair();
      return [
        a,
        () => {
          nat.close(a);
          nat.close(b);
        },
      ];
    }
    case 'file':
      return closeNode(openSync(join(dir, 'page'), 'r+'));
    case 'file-readonly':
      return closeNode(openSync(join(dir, 'page'), 'r'));
    case 'devnull':
      return closeNode(openSync('/dev/null', 'r+'));
  }
}

/** Listens on a fresh path; `accept` waits for the client that connect() started. */
function fakeServer() {
  const listener = UnixListener.listen(join(dir, `s${n++}.sock`));
  const held: (() => void)[] = [];
  let client: UnixSocket | null = null;
  const server = {
    path: listener.path,
    async accept(): Promise<UnixSocket> {
      await until(() => (client = listener.accept()) !== null, 'the client connected', 5000, 1);
      return client as unknown as UnixSocket;
    },
    /** Sends one message with an fd of `kind` (or none). */
    send(value: bigint | number, kind?: FdKind): void {
      const fds: number[] = [];
      if (kind !== undefined) {
        const [fd, close] = makeFd(kind);
        held.push(close);
        fds.push(fd);
      }
      expect((client as unknown as UnixSocket).sendRaw(encodeMessage(value), fds)).toBe(8);
    },
    close(): void {
      (client as UnixSocket | null)?.close();
      listener.close();
      for (const c of held.splice(0)) c();
    },
  };
  cleanups.push(() => server.close());
  return server;
}

const isEventfd = (fd: number) => readlinkSync(`/proc/self/fd/${fd}`) === 'anon_inode:[eventfd]';
const connect = (path: string, vectors = 2, extra = {}) =>
  ServerConnection.connect(path, { vectors, setupTimeoutMs: SETUP_MS, ...extra });
const createDevice = (path: string, vectors = 2) =>
  IvshmemDevice.create({ mode: 'doorbell', vectors, server: path, setupTimeoutMs: SETUP_MS, core: 'ts', transport });

async function expectCode(p: Promise<unknown>, code: string): Promise<void> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(IvshmemError);
  expect((err as IvshmemError).code).toBe(code);
}

describe('a hostile server', () => {
  // The warm-up makes what the suite needs before the fds are counted, and spawns once, for what
  // Node keeps open after its first child.
  expectNoFdLeak(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ivshmem-hostile-'));
    expect(spawnSync('mkfifo', [join(dir, 'fifo')]).status).toBe(0);
    writeFileSync(join(dir, 'page'), Buffer.alloc(4096));
    await new Promise((r) => spawn('true').on('close', r));
    deviceBundle();
  });

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  describe('arbitrary byte streams', () => {
    // A message: a value and maybe an fd. Streams start with a plausible setup (version, id, some
    // vectors, the memory) cut anywhere, continue with arbitrary messages, and may end mid-message.
    const fdKind = fc.option(fc.constantFrom(...FD_KINDS), { nil: undefined, freq: 2 });
    const value = fc.oneof(
      fc.constantFrom(0n, 1n, 2n, 3n, -1n, 65535n, 65536n, -2n),
      fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
    );
    const setup = fc.record({
      id: fc.integer({ min: 0, max: 3 }),
      peers: fc.array(fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 2 })), { maxLength: 3 }),
      own: fc.integer({ min: 0, max: 2 }),
      memory: fc.constantFrom<FdKind>('memfd', 'memfd', 'memfd', 'memfd-odd', 'file', 'eventfd'),
      cut: fc.oneof({ arbitrary: fc.constant(-1), weight: 3 }, { arbitrary: fc.nat(), weight: 2 }), // -1: whole
    });
    const stream = fc.record({
      setup,
      tail: fc.array(fc.tuple(value, fdKind), { maxLength: 6 }),
      garbage: fc.uint8Array({ maxLength: 7 }),
      splits: fc.array(fc.nat(), { maxLength: 8 }),
      // Mostly a chunk starts where a message with an fd starts (as a server sending each message
      // with its own sendmsg does); otherwise fds land on whatever message is being read.
      alignFds: fc.oneof({ arbitrary: fc.constant(true), weight: 3 }, { arbitrary: fc.constant(false), weight: 1 }),
      pauses: fc.array(fc.boolean(), { minLength: 9, maxLength: 9 }),
      end: fc.constantFrom('eof', 'stall'),
      device: fc.boolean(),
    });

    it('every stream ends in a consistent connection or a coded error, in bounded time, with no fd left behind', async () => {
      const baseline = openFdCount();
      const outcomes = new Map<string, number>();
      await fc.assert(
        fc.asyncProperty(stream, async (s) => {
          const messages: [bigint, FdKind | undefined][] = [
            [0n, undefined],
            [BigInt(s.setup.id), undefined],
          ];
          for (const [peer, count] of s.setup.peers)
            for (let v = 0; v < count; v++) messages.push([BigInt(peer), 'eventfd']);
          for (let v = 0; v < s.setup.own; v++) messages.push([BigInt(s.setup.id), 'eventfd']);
          messages.push([-1n, s.setup.memory]);
          if (s.setup.cut >= 0) messages.splice(s.setup.cut % (messages.length + 1));
          messages.push(...s.tail);
          const bytes = new Uint8Array(messages.length * 8 + s.garbage.length);
          messages.forEach(([v], i) => bytes.set(encodeMessage(v), i * 8));
          bytes.set(s.garbage, messages.length * 8);
          const cuts = s.splits.map((x) => x % (bytes.length + 1));
          if (s.alignFds) messages.forEach(([, kind], i) => kind !== undefined && cuts.push(i * 8));
          cuts.sort((a, b) => a - b);
          cuts.push(bytes.length);

          const server = fakeServer();
          const attempt = s.device ? createDevice(server.path) : connect(server.path);
          const settled = attempt.then(
            (r) => ({ ok: r }),
            (err: unknown) => ({ err }),
          );
          const client = await server.accept();
          let from = 0;
          for (const [i, to] of cuts.entries()) {
            // The fds of the messages starting in this chunk go with it.
            const fds: number[] = [];
            for (let m = Math.ceil(from / 8); m * 8 < to && m < messages.length; m++) {
              const kind = messages[m][1];
              if (kind === undefined) continue;
              const [fd, close] = makeFd(kind);
              cleanups.push(close);
              fds.push(fd);
            }
            if (to > from) {
              try {
                client.sendRaw(bytes.subarray(from, to), fds);
              } catch {
                break; // the client already hung up on us
              }
              from = to;
            }
            if (s.pauses[i % s.pauses.length]) await tick();
          }
          if (s.end === 'eof') client.close();
          const bound = new Promise<{ hang: true }>((r) => {
            const t = setTimeout(() => r({ hang: true }), SETUP_MS + 5000);
            settled.finally(() => clearTimeout(t));
          });
          const r = await Promise.race([settled, bound]);
          expect(r).not.toHaveProperty('hang');
          let outcome: string;
          if ('err' in r) {
            expect(r.err).toBeInstanceOf(IvshmemError);
            expect((r.err as IvshmemError).code).toMatch(/^ERR_IVSHMEM_[A-Z_]+$/);
            outcome = (r.err as IvshmemError).code;
          } else {
            const ok = (r as { ok: ServerConnection | IvshmemDevice }).ok;
            const conn = ok instanceof IvshmemDevice ? ok.connection! : ok;
            expect(conn.id).toBeGreaterThanOrEqual(0);
            expect(conn.id).toBeLessThanOrEqual(65535);
            expect(conn.memory!.size).toBeGreaterThan(0);
            expect(conn.ownVectors.length).toBeLessThanOrEqual(2);
            for (const e of conn.ownVectors) expect(isEventfd(e.fd)).toBe(true);
            for (const list of conn.peers.values()) {
              expect(list.length).toBeLessThanOrEqual(2);
              for (const e of list) expect(isEventfd(e.fd)).toBe(true);
            }
            if (ok instanceof IvshmemDevice) {
              expect(ok.id).toBe(conn.id);
              const size = ok.sharedMemory.size;
              ok.mmioWrite(2, size - 4, 4, 0xa5a5a5a5);
              expect(ok.mmioRead(2, size - 4, 4)).toBe(0xa5a5a5a5);
              for (const [peer, list] of conn.peers)
                for (let v = 0; v < list.length; v++) ok.mmioWrite(0, 0x0c, 4, (peer << 16) | v);
            }
            ok.close();
            outcome = ok instanceof IvshmemDevice ? 'device' : 'connection';
          }
          outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
          server.close();
          for (const c of cleanups.splice(0).reverse()) c();
          await tick();
          if (openFdCount() !== baseline)
            expect.fail(`fds after a run: ${JSON.stringify(openFds())}, baseline ${baseline}`);
        }),
        {
          numRuns: Number(process.env.IVSHMEM_HOSTILE_RUNS ?? 200),
          seed: Number(process.env.IVSHMEM_HOSTILE_SEED ?? Date.now() % 2 ** 31),
        },
      );
      // The property must have met both endings, or it proved little.
      const codes = [...outcomes.keys()];
      expect(codes.some((c) => c === 'device' || c === 'connection')).toBe(true);
      expect(codes.some((c) => c.startsWith('ERR_IVSHMEM_'))).toBe(true);
    }, 60_000);
  });

  describe('fds of the wrong kind', () => {
    it.each(['pipe', 'socket', 'file', 'memfd', 'devnull'] as FdKind[])(
      'a %s as a peer vector during setup is refused with ERR_IVSHMEM_PROTOCOL_FD',
      async (kind) => {
        const server = fakeServer();
        const pending = createDevice(server.path);
        await server.accept();
        server.send(0);
        server.send(1);
        server.send(0, kind);
        await expectCode(pending, 'ERR_IVSHMEM_PROTOCOL_FD');
      },
    );

    it.each(['pipe', 'socket', 'file'] as FdKind[])(
      'a %s as one of our own vectors is refused with ERR_IVSHMEM_PROTOCOL_FD',
      async (kind) => {
        const server = fakeServer();
        const pending = connect(server.path);
        await server.accept();
        server.send(0);
        server.send(1);
        server.send(1, 'eventfd');
        server.send(1, kind);
        server.send(-1, 'memfd');
        await expectCode(pending, 'ERR_IVSHMEM_PROTOCOL_FD');
      },
    );

    it.each([
      ['socket', 'ERR_IVSHMEM_PROTOCOL_FD'],
      ['pipe', 'ERR_IVSHMEM_PROTOCOL_FD'],
      ['eventfd', 'ERR_IVSHMEM_PROTOCOL_FD'],
      ['devnull', 'ERR_IVSHMEM_PROTOCOL_FD'],
      ['memfd-empty', 'ERR_IVSHMEM_PROTOCOL_SHM'],
      ['file-readonly', 'ERR_IVSHMEM_PROTOCOL_SHM'], // a regular file, but it cannot be mapped shared and writable
      ['memfd-odd', 'ERR_IVSHMEM_INVALID_SIZE'], // 3000 bytes: no BAR is that size
    ] as [FdKind, string][])('a %s as shared memory: the device refuses it with %s', async (kind, code) => {
      const server = fakeServer();
      const pending = createDevice(server.path);
      await server.accept();
      server.send(0);
      server.send(0);
      server.send(-1, kind);
      await expectCode(pending, code);
    });

    it('a read-only file as shared memory: the refusal keeps the failed mmap as its cause (errno, syscall)', async () => {
      const server = fakeServer();
      const pending = createDevice(server.path);
      await server.accept();
      server.send(0);
      server.send(0);
      server.send(-1, 'file-readonly');
      const err = await pending.then(
        () => undefined,
        (e: unknown) => e as Error & { cause?: Record<string, unknown> },
      );
      expect(err).toMatchObject({ code: 'ERR_IVSHMEM_PROTOCOL_SHM' });
      expect(err?.cause).toMatchObject({ syscall: 'mmap', code: expect.stringMatching(/^E[A-Z]+$/) });
      expect(typeof err?.cause?.errno).toBe('number');
    });

    it('a server that never accepts (its backlog full): a timeout that keeps the refused connect as its cause', async () => {
      const listener = UnixListener.listen(join(dir, `s${n++}.sock`), 1);
      const queued: UnixSocket[] = [];
      try {
        // Fill the backlog: Linux queues backlog + 1 connections, then refuses with EAGAIN.
        for (;;) {
          try {
            queued.push(UnixSocket.connect(listener.path));
          } catch (e) {
            expect((e as NodeJS.ErrnoException).code).toBe('EAGAIN');
            break;
          }
          expect(queued.length).toBeLessThan(64);
        }
        const err = await ServerConnection.connect(listener.path, { vectors: 1, setupTimeoutMs: 50 }).then(
          () => undefined,
          (e: unknown) => e as Error & { cause?: Record<string, unknown> },
        );
        expect(err).toMatchObject({ code: 'ERR_IVSHMEM_PROTOCOL_TIMEOUT' });
        expect(err?.cause).toMatchObject({ code: 'EAGAIN', syscall: 'connect' });
      } finally {
        for (const q of queued) q.close();
        listener.close();
      }
    });

    it('a regular file as shared memory is legitimate (QEMU maps whatever the server sends)', async () => {
      const server = fakeServer();
      const pending = createDevice(server.path, 1);
      await server.accept();
      server.send(0);
      server.send(0);
      server.send(-1, 'file');
      const device = await pending;
      cleanups.push(() => device.close());
      device.mmioWrite(2, 8, 4, 0x01020304);
      expect(readFileSync(join(dir, 'page')).readUInt32LE(8)).toBe(0x01020304);
      device.mmioWrite(2, 8, 4, 0);
    });

    it('after setup a peer vector of the wrong kind is a protocol error: no route, the connection stays up', async () => {
      const server = fakeServer();
      const pending = createDevice(server.path, 1);
      await server.accept();
      server.send(0);
      server.send(0);
      server.send(-1, 'memfd');
      const device = await pending;
      cleanups.push(() => device.close());
      const errors: string[] = [];
      device.connection!.on('protocol-error', (err) => errors.push(err.code));
      server.send(3, 'pipe');
      server.send(4, 'eventfd');
      await until(() => device.peerVectors(4) === 1, 'peer 4 joined');
      expect(errors).toEqual(['ERR_IVSHMEM_PROTOCOL_FD']);
      expect(device.peerVectors(3)).toBe(0);
      expect(device.connection!.serverGone).toBe(false);
    });

    it('a blocking eventfd at its maximum count as a peer vector: received non-blocking, a doorbell to it returns', async () => {
      // Node makes no blocking eventfds: Python does, and hands one over a socket pair.
      const [ours, theirs] = UnixSocket.pair();
      cleanups.push(
        () => ours.close(),
        () => theirs.close(),
      );
      const script = [
        'import os, socket',
        's = socket.socket(fileno=3)',
        'e = os.eventfd(0)', // blocking
        'os.eventfd_write(e, 2**64 - 2)', // one more and a blocking write would wait for a reader
        "socket.send_fds(s, [b'\\0' * 8], [e])",
      ].join('\n');
      const py = spawnSync('python3', ['-c', script], {
        stdio: ['ignore', 'inherit', 'inherit', theirs.fd],
        timeout: 10_000,
      });
      expect(py.status).toBe(0);
      let m: ReturnType<UnixSocket['receive']> = null;
      await until(() => (m ??= ours.receive()) !== null, 'the eventfd arrived');
      const blocking = (m as unknown as { fd: number }).fd;
      cleanups.push(() => native().close(blocking));
      const flags = () => parseInt(/flags:\s*(\d+)/.exec(readFileSync(`/proc/self/fdinfo/${blocking}`, 'utf8'))![1], 8);
      const O_NONBLOCK = 0o4000;
      expect(flags() & O_NONBLOCK).toBe(0);

      const server = fakeServer();
      const pending = createDevice(server.path, 1);
      const client = await server.accept();
      server.send(0);
      server.send(0);
      expect(client.sendRaw(encodeMessage(1), [blocking])).toBe(8);
      server.send(-1, 'memfd');
      const device = await pending;
      cleanups.push(() => device.close());
      expect(flags() & O_NONBLOCK).toBe(O_NONBLOCK); // the same open file description, now non-blocking
      device.configWrite(0x04, 2, 0x06); // memory + bus master
      device.mmioWrite(0, 0x0c, 4, (1 << 16) | 0); // ring peer 1: the write would overflow the counter
      expect(device.counters().doorbellsSent).toBe(1);
    });
  });

  describe('shared memory that shrinks after we mapped it', () => {
    const runChild = (sealable: string) =>
      new Promise<{ code: number | null; signal: string | null; out: string; err: string }>((resolve, reject) => {
        const child = spawn(
          process.execPath,
          [
            fileURLToPath(new URL('../support/shrinking-server-child.mjs', import.meta.url)),
            deviceBundle(),
            dir,
            sealable,
          ],
          {
            stdio: ['ignore', 'pipe', 'pipe'],
          },
        );
        let out = '';
        let err = '';
        child.stdout.on('data', (d) => (out += d));
        child.stderr.on('data', (d) => (err += d));
        const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
        child.on('error', reject);
        child.on('close', (code, signal) => {
          clearTimeout(timer);
          resolve({ code, signal, out, err });
        });
      });

    it('a sealable memfd is sealed at receipt: the server cannot truncate it and the device keeps working', async () => {
      const r = await runChild('sealable');
      expect(r.signal, r.err).toBe(null);
      expect(r.code, r.err).toBe(0);
      expect(JSON.parse(r.out)).toEqual({ truncate: 'EPERM', read: 0x12345678, size: 65536 });
    }, 40_000);

    it('the control: memory that cannot be sealed, truncated under the mapping, kills with SIGBUS (the documented risk)', async () => {
      const r = await runChild('unsealable');
      expect(r.signal, `${r.out}${r.err}`).toBe('SIGBUS');
    }, 40_000);

    it('requireSealedMemory refuses memory that cannot be sealed, and accepts a sealable memfd', async () => {
      for (const [sealable, outcome] of [
        [false, 'ERR_IVSHMEM_PROTOCOL_SHM'],
        [true, 'ok'],
      ] as const) {
        const server = fakeServer();
        const pending = connect(server.path, 1, { requireSealedMemory: true });
        const client = await server.accept();
        const memfd = native().memfdCreate('ivshmem-unsealable', sealable);
        cleanups.push(() => native().close(memfd));
        native().ftruncate(memfd, 4096);
        server.send(0);
        server.send(0);
        client.sendRaw(encodeMessage(-1), [memfd]);
        if (outcome === 'ok') (await pending).close();
        else await expectCode(pending, outcome);
      }
    });
  });

  describe('a server that stalls', () => {
    it.each([
      ['never answers after accept', []],
      ['sends the version, then nothing', [0]],
      ['stops in the middle of the id message', [0, 'half']],
      ['stops in the middle of the memory message, its fd already sent', [0, 1, 'half-fd']],
    ] as [string, (number | string)[]][])('that %s: ERR_IVSHMEM_PROTOCOL_TIMEOUT', async (_name, script) => {
      const server = fakeServer();
      const pending = connect(server.path);
      const client = await server.accept();
      for (const step of script) {
        if (typeof step === 'number') server.send(step);
        else {
          const fds: number[] = [];
          if (step === 'half-fd') {
            const [fd, close] = makeFd('memfd');
            cleanups.push(close);
            fds.push(fd);
          }
          expect(client.sendRaw(encodeMessage(-1).subarray(0, 4), fds)).toBe(4);
        }
      }
      await expectCode(pending, 'ERR_IVSHMEM_PROTOCOL_TIMEOUT');
    });
  });

  describe('a server that floods us after setup', () => {
    it('drops the connection with ERR_IVSHMEM_PROTOCOL_FLOOD; memory and routes stay, the device keeps working', async () => {
      const server = fakeServer();
      const pending = createDevice(server.path, 1);
      await server.accept();
      server.send(0);
      server.send(1);
      server.send(0, 'eventfd'); // peer 0
      server.send(1, 'eventfd'); // our vector
      server.send(-1, 'memfd');
      const device = await pending;
      cleanups.push(() => device.close());
      const conn = device.connection!;
      const errors: string[] = [];
      let closed = '';
      conn.on('protocol-error', (err) => errors.push(err.code));
      conn.on('close', (reason) => (closed = reason));
      for (let i = 0; i < MAX_BAD_MESSAGES * 2; i++) {
        try {
          server.send(70000 + i);
        } catch {
          break;
        }
      }
      await until(() => conn.serverGone, 'the client hung up');
      expect(errors.length).toBe(MAX_BAD_MESSAGES + 1);
      expect(new Set(errors.slice(0, -1))).toEqual(new Set(['ERR_IVSHMEM_PROTOCOL_VALUE']));
      expect(errors.at(-1)).toBe('ERR_IVSHMEM_PROTOCOL_FLOOD');
      expect(closed).toMatch(/too many bad messages/);
      expect(device.peerVectors(0)).toBe(1);
      expect(device.ownVectorFds.length).toBe(1);
      device.mmioWrite(2, 0, 4, 7);
      expect(device.mmioRead(2, 0, 4)).toBe(7);
      device.configWrite(0x04, 2, 0x06);
      device.mmioWrite(0, 0x0c, 4, 0 << 16);
      expect(device.counters().doorbellsSent).toBe(1);
    });
  });
});
