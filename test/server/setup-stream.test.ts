// A newcomer's setup stream is whole: when another peer's socket fails while the newcomer is
// being set up (here: a peer that stopped reading, so the server's send to it fails with EPIPE),
// nothing lands in the middle of the newcomer's version, id, shm, peers and own vectors; the
// failed peer is announced to it in full and then left, never left without having been announced.
// QEMU refuses to realize the device on a leave for a peer it has no entry for.
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { native } from '../../src/os/binding.js';
import { UnixSocket } from '../../src/os/unix-socket.js';
import { IvshmemServer } from '../../src/server/ivshmem-server.js';
import { runNewestFirst } from '../support/cleanups.js';
import { expectNoFdLeak } from '../support/fd-leaks.js';
import { until } from '../support/until.js';

const SHUT_RD = 0;
let dir: string;
let n = 0;
const cleanups: (() => void)[] = [];
const failures: string[] = [];
const prefix = `ivshmem-test-stream-${process.pid}-`;

// Every message a raw client gets until the stream has been quiet for a while: [value, hasFd].
async function readStream(socket: UnixSocket, atLeast: number): Promise<[number, boolean][]> {
  const got: [number, boolean][] = [];
  await until(
    () => {
      for (let m = socket.receive(); m !== null; m = socket.receive()) {
        got.push([Number(m.value), m.fd >= 0]);
        if (m.fd >= 0) native().close(m.fd);
      }
      return got.length >= atLeast;
    },
    `${atLeast} messages`,
    5000,
    2,
  );
  return got;
}

function connect(path: string): UnixSocket {
  const s = UnixSocket.connect(path);
  cleanups.push(() => s.close());
  return s;
}

expectNoFdLeak();
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ivshmem-stream-'));
});
afterEach(() => runNewestFirst(cleanups, failures));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  expect(readdirSync('/dev/shm').filter((f) => f.startsWith(prefix))).toEqual([]);
  expect(failures).toEqual([]);
});

describe('a newcomer joining while another peer fails', () => {
  for (const vectors of [1, 3]) {
    it(`gets a contiguous setup, then the failed peer's leave (${vectors} vector(s))`, async () => {
      const server = IvshmemServer.start({
        socketPath: join(dir, `s${n}.sock`),
        memory: { shm: `${prefix}${n++}` },
        size: 1 << 16,
        vectors,
      });
      cleanups.push(() => server.close());
      const leaves: number[] = [];
      server.on('leave', (id) => leaves.push(id));
      const healthy = connect(server.socketPath);
      await readStream(healthy, 3 + vectors);
      const failing = connect(server.socketPath);
      await readStream(failing, 3 + 2 * vectors);
      await readStream(healthy, 3 + 2 * vectors - 3 - vectors);
      // It stops reading: the server finds out only when it next sends to it, which is while the
      // newcomer's setup goes out.
      native().shutdown(failing.fd, SHUT_RD);

      const newcomer = connect(server.socketPath);
      const setupLength = 3 + 3 * vectors;
      const stream = await readStream(newcomer, setupLength + 1);
      const own = stream[1][0];
      const ids = (value: number) => Array.from({ length: vectors }, () => [value, true] as [number, boolean]);
      expect(stream).toEqual([
        [0, false],
        [own, false],
        [-1, true], // version, id, shm
        ...ids(0),
        ...ids(1), // the peers there, each in full
        ...ids(own), // its own vectors: the end of setup
        [1, false], // and only then: the failed peer left
      ]);
      await until(() => leaves.includes(1), 'the server reports the leave');
      expect(server.peerIds).toEqual([0, own]);
      // The healthy peer heard of the newcomer and of the leave, in that order.
      const rest = await readStream(healthy, vectors + 1);
      expect(rest).toEqual([...ids(own), [1, false]]);
    });
  }
});
