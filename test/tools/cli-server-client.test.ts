// The ivshmem-server and ivshmem-client commands as separate processes, the way people run QEMU's
// contrib tools: three clients joining and leaving in different orders, interrupts between them,
// the server's shutdown on SIGTERM, and a server short of fds refusing only the connections it
// cannot serve.
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { killStartedProcesses, startCli as start } from '../support/cli-process.js';
import { until } from '../support/until.js';

let dir: string;
let n = 0;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ivshmem-cli-'));
});
afterEach(killStartedProcesses);
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  for (const f of readdirSync('/dev/shm'))
    if (f.startsWith(`ivshmem-test-cli-${process.pid}-`)) rmSync(join('/dev/shm', f));
});

describe('ivshmem-server and ivshmem-client processes', () => {
  it('serve three clients joining, ringing and leaving in every order, then stop cleanly on SIGTERM', async () => {
    const sock = join(dir, `s${n++}.sock`);
    const shm = `ivshmem-test-cli-${process.pid}-${n++}`;
    const server = start('ivshmem-server.js', ['-F', '-v', '-S', sock, '-M', shm, '-l', '1M', '-n', '2']);
    await server.waitFor('listening on');
    const c0 = start('ivshmem-client.js', ['-S', sock]);
    await c0.waitFor('our_id = 0');
    const c1 = start('ivshmem-client.js', ['-S', sock]);
    await c1.waitFor('our_id = 1');
    await c0.waitFor('peer 1 joined');
    const c2 = start('ivshmem-client.js', ['-S', sock]);
    await c2.waitFor('our_id = 2');
    await Promise.all([c0.waitFor('peer 2 joined'), c1.waitFor('peer 2 joined')]);

    c2.send('int 0 1');
    await c0.waitFor('receive notification from peer_id=0 vector=1');
    c0.send('int all');
    await c1.waitFor('receive notification from peer_id=1 vector=0');
    await c2.waitFor('receive notification from peer_id=2 vector=1');
    c1.send('dump');
    await c1.waitFor(/our_id = 1\n {2}vector 0 is enabled \(fd=\d+\)\n {2}vector 1 is enabled/);
    c1.send('int 7 0');
    await c1.waitFor('cannot find peer_id = 7');

    // Leaves: the middle one first, then the first one; a newcomer then gets a fresh id (3).
    c1.child.stdin.end();
    await Promise.all([c0.waitFor('peer 1 left'), c2.waitFor('peer 1 left')]);
    c0.child.kill('SIGKILL');
    await c2.waitFor('peer 0 left');
    const c3 = start('ivshmem-client.js', ['-S', sock]);
    await c3.waitFor('our_id = 3');
    await c2.waitFor('peer 3 joined');
    c3.send('int 2 all');
    await c2.waitFor('receive notification from peer_id=2 vector=0');

    server.child.kill('SIGTERM');
    await Promise.all([c2.waitFor('disconnected from server'), c3.waitFor('disconnected from server')]);
    await server.exited();
    expect(server.child.exitCode).toBe(0);
    expect(existsSync(sock)).toBe(false);
    expect(existsSync(`/dev/shm/${shm}`)).toBe(false);
    // The clients keep trying to reconnect, as QEMU's client does, and get back in (with new ids)
    // once a server is there again.
    await c2.waitFor('cannot connect to server, retry in 1 second', 3000);
    const again = start('ivshmem-server.js', ['-F', '-S', sock, '-M', shm, '-l', '1M', '-n', '2']);
    const rejoined = /listen on server socket[\s\S]*listen on server socket .*our_id = [01]\n/;
    await Promise.all([c2.waitFor(rejoined, 5000), c3.waitFor(rejoined, 5000)]);
    again.child.kill('SIGTERM');
    await again.exited();
  });

  it('refuses, per connection and with a log line, what it has no fds for, and keeps serving', async () => {
    const sock = join(dir, `s${n++}.sock`);
    const shm = `ivshmem-test-cli-${process.pid}-${n++}`;
    // 64 fds: Node's own plus a few peers of 4 vectors, not a dozen.
    const server = start('ivshmem-server.js', ['-F', '-v', '-S', sock, '-M', shm, '-n', '4'], {
      shellPrefix: 'ulimit -n 64;',
    });
    await server.waitFor('listening on');
    const clients = Array.from({ length: 12 }, () => start('ivshmem-client.js', ['-S', sock]));
    await server.waitFor(/refused a connection: E[MN]FILE|cannot (accept|create eventfds)/, 8000);
    // Whoever got in still works: it rings itself through the server's eventfds.
    const servedOne = () => clients.find((c) => /our_id = \d+/.test(c.out()));
    await until(() => servedOne() !== undefined, 'a client served', 5000, 10);
    const served = servedOne()!;
    const id = Number(/our_id = (\d+)/.exec(served.out())![1]);
    served.send(`int ${id} 0`);
    await served.waitFor(`receive notification from peer_id=${id} vector=0`);
    // The refused ones saw the connection closed during setup, and retry.
    const refusedSeen = () => clients.some((c) => c.out().includes('cannot connect to server'));
    await until(refusedSeen, 'a refused client retrying', 5000, 10);
    expect(server.child.exitCode).toBeNull();
    server.child.kill('SIGTERM');
    await server.exited();
    expect(server.child.exitCode).toBe(0);
  });

  it("prints usage, refuses verbose in daemon mode and bad sizes, as QEMU's server does", async () => {
    const help = start('ivshmem-server.js', ['-h']);
    await help.exited();
    expect(help.child.exitCode).toBe(0);
    expect(help.out()).toContain('-S, --socket-path PATH');
    const verbose = start('ivshmem-server.js', ['-v']);
    await verbose.exited();
    expect(verbose.child.exitCode).toBe(1);
    expect(verbose.out()).toContain('cannot use verbose in daemon mode');
    const size = start('ivshmem-server.js', ['-F', '-l', '12Q']);
    await size.exited();
    expect(size.child.exitCode).toBe(1);
    expect(size.out()).toContain("Try 'ivshmem-server -h'");
  });
});

describe('ivshmem-server statistics', () => {
  const statsLines = (text: string) =>
    text
      .split('\n')
      .filter((l) => l.startsWith('{"stats":"ivshmem-server"'))
      .map((l) => JSON.parse(l));

  it("the client takes -n up to the server's vectors, refuses a wider server once with exit 1, and keeps its prompt apart", async () => {
    const sock = join(dir, `s${n++}.sock`);
    const shm = `ivshmem-test-cli-${process.pid}-${n++}`;
    const server = start('ivshmem-server.js', ['-F', '-v', '-S', sock, '-M', shm, '-n', '100']);
    await server.waitFor('listening on');
    const narrow = start('ivshmem-client.js', ['-S', sock]); // QEMU's default: at most 64 vectors
    expect(await narrow.exited()).toBe(1);
    expect(narrow.out()).toMatch(
      /cannot use the server at .*: Too many eventfd received, device has 64 vectors.*-n.*ERR_IVSHMEM_TOO_MANY_VECTORS/,
    );
    expect(narrow.out()).not.toContain('retry in 1 second');
    const wide = start('ivshmem-client.js', ['-S', sock, '-n', '100']);
    await wide.waitFor(/our_id = \d+/);
    const other = start('ivshmem-client.js', ['-S', sock, '-n', '2048']);
    await wide.waitFor(/peer \d+ joined/);
    other.send('int all');
    await wide.waitFor(/receive notification from peer_id=\d+ vector=99/);
    // Output that arrives while the prompt waits starts a line of its own, and the prompt follows.
    for (const line of wide.out().split('\n')) expect(line).toMatch(/^(cmd> )?$|^(?!cmd> )/);
    expect(wide.out()).toMatch(/\ncmd> \npeer \d+ joined\ncmd> /);
    // Only the one refused client cost the server a join and a leave: it did not come back.
    expect(server.out().match(/new peer id = /g)).toHaveLength(3);
    const bad = start('ivshmem-client.js', ['-S', sock, '-n', '4096']);
    expect(await bad.exited()).toBe(1);
    expect(bad.out()).toContain('-n takes a number of vectors 1..2048');
    server.child.kill('SIGTERM');
    await server.exited();
  });

  it('prints its statistics as one JSON line on SIGUSR2, and every --stats-interval seconds', async () => {
    const sock = join(dir, `s${n++}.sock`);
    const shm = `ivshmem-test-cli-${process.pid}-${n++}`;
    const server = start('ivshmem-server.js', ['-F', '-v', '-S', sock, '-M', shm, '-n', '2']);
    await server.waitFor('listening on');
    const c0 = start('ivshmem-client.js', ['-S', sock]);
    await c0.waitFor('our_id = 0');
    const c1 = start('ivshmem-client.js', ['-S', sock]);
    await Promise.all([c1.waitFor('our_id = 1'), c0.waitFor('peer 1 joined')]);
    c1.child.kill('SIGKILL');
    await c0.waitFor('peer 1 left');
    expect(statsLines(server.out())).toEqual([]); // nothing until asked
    server.child.kill('SIGUSR2');
    await server.waitFor('{"stats":"ivshmem-server"');
    const last = statsLines(server.out()).at(-1);
    expect(last).toMatchObject({
      peers: 1,
      joins: 2,
      leaves: 1,
      setupFailures: 0,
      refusals: {},
      slowReaderDrops: 0,
      messagesQueued: 0,
      bytesQueued: 0,
    });
    // c0's setup (3 + 2 own vectors) + c1's 2 announced; c1's setup (3 + 2 + 2); c1's leave to c0.
    expect(last.messagesSent).toBe(5 + 2 + 7 + 1);
    expect(Number.isNaN(Date.parse(last.time))).toBe(false);
    server.child.kill('SIGTERM');
    await server.exited();
    expect(server.child.exitCode).toBe(0);
    expect(statsLines(server.out()).length).toBe(1);
    // With --stats-interval, the lines come by themselves.
    const ticking = start('ivshmem-server.js', ['-F', '-S', sock, '-M', shm, '--stats-interval', '0.1']);
    await ticking.waitFor(/"stats":"ivshmem-server"[^]*"stats":"ivshmem-server"/);
    expect(statsLines(ticking.out())[0]).toMatchObject({ peers: 0, joins: 0, leaves: 0 });
    ticking.child.kill('SIGTERM');
    await ticking.exited();
    expect(ticking.child.exitCode).toBe(0);
  });

  it('counts refusals for want of fds, publishes them on its channel and in NODE_DEBUG=ivshmem lines', async () => {
    const sock = join(dir, `s${n++}.sock`);
    const shm = `ivshmem-test-cli-${process.pid}-${n++}`;
    const preload = fileURLToPath(new URL('../support/server-channel-log.mjs', import.meta.url));
    const server = start('ivshmem-server.js', ['-F', '-v', '-S', sock, '-M', shm, '-n', '4'], {
      shellPrefix: `ulimit -n 64; NODE_DEBUG=ivshmem NODE_OPTIONS='--import=${preload}'`,
    });
    await server.waitFor('listening on');
    // Raw connections from this process (no client fds needed) until the server runs short.
    const { UnixSocket } = await import('../../src/os/unix-socket.js');
    const conns: { close(): void }[] = [];
    try {
      const end = Date.now() + 8000;
      while (!/refused a connection: E[MN]FILE/.test(server.out()) && Date.now() < end) {
        try {
          conns.push(UnixSocket.connect(sock));
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
        }
        await new Promise((r) => setTimeout(r, 5));
      }
      await server.waitFor(/channel ivshmem:server:refuse \{"socketPath":"[^"]+","reason":"E[MN]FILE"\}/);
      await server.waitFor(/IVSHMEM \d+: server .* refused a connection: E[MN]FILE/);
      await server.waitFor(/channel ivshmem:server:join \{"socketPath":"[^"]+","id":0,"peers":1\}/);
      const before = statsLines(server.out()).length;
      server.child.kill('SIGUSR2');
      await until(() => statsLines(server.out()).length > before, 'the stats printed on SIGUSR2', 5000, 10);
      const stats = statsLines(server.out()).at(-1);
      const refusedLines = server.out().match(/ivshmem-server: refused a connection: \S+/g) ?? [];
      const counted = Object.values(stats.refusals as Record<string, number>).reduce((x, y) => x + y, 0);
      // Connections still waiting may be refused after the line was printed, never before.
      expect(counted).toBeGreaterThan(0);
      expect(counted).toBeLessThanOrEqual(refusedLines.length);
      expect((stats.refusals.EMFILE ?? 0) + (stats.refusals.ENFILE ?? 0)).toBeGreaterThan(0);
      expect(stats.joins).toBeGreaterThan(0);
    } finally {
      for (const c of conns) c.close();
    }
    expect(server.child.exitCode).toBeNull(); // still serving
    server.child.kill('SIGTERM');
    await server.exited();
    expect(server.child.exitCode).toBe(0);
  });

  it('keeps a peer state table with --state-table: in its statistics, refused when it does not fit, documented', async () => {
    for (const bad of ['0', '65537', 'many']) {
      const p = start('ivshmem-server.js', ['-F', '--state-table', bad]);
      await p.exited();
      expect(p.child.exitCode).toBe(1);
      expect(p.out()).toContain('--state-table takes a number of slots, 1..65536');
    }
    // 4 KiB of memory cannot hold 200 slots (6,464 bytes): a coded error, nothing left behind.
    const small = `ivshmem-test-cli-${process.pid}-${n++}`;
    const smallSock = join(dir, `s${n++}.sock`);
    const tooBig = start('ivshmem-server.js', ['-F', '-S', smallSock, '-M', small, '-l', '4K', '--state-table', '200']);
    await tooBig.exited();
    expect(tooBig.child.exitCode).toBe(1);
    expect(tooBig.out()).toMatch(
      /cannot start: a state table of 200 slots .* does not fit 4096 bytes .*\(ERR_IVSHMEM_STATE_TABLE\)/,
    );
    expect([existsSync(`/dev/shm/${small}`), existsSync(smallSock)]).toEqual([false, false]);

    const sock = join(dir, `s${n++}.sock`);
    const shm = `ivshmem-test-cli-${process.pid}-${n++}`;
    const server = start('ivshmem-server.js', ['-F', '-v', '-S', sock, '-M', shm, '-l', '1M', '--state-table', '8']);
    await server.waitFor('listening on');
    const c0 = start('ivshmem-client.js', ['-S', sock]);
    await c0.waitFor('our_id = 0');
    server.child.kill('SIGUSR2');
    await server.waitFor('{"stats":"ivshmem-server"');
    expect(statsLines(server.out()).at(-1)).toMatchObject({
      peers: 1,
      stateTable: { offset: (1 << 20) - 4096, slots: 8, joinsWithoutEntry: 0 },
    });
    // The table is in the memory, where any peer can read it: the client's entry is present.
    const { SharedMemory } = await import('../../src/os/shared-memory.js');
    const { PeerStateTable, PRESENCE_PRESENT } = await import('../../src/core/peer-state-table.js');
    const memory = SharedMemory.open({ shm }, { size: 1 << 20 });
    try {
      const table = PeerStateTable.findAtEnd(memory.map());
      expect(table.entry(table.slotOf(0))).toMatchObject({ id: 0, presence: PRESENCE_PRESENT });
    } finally {
      memory.close();
    }
    c0.child.kill('SIGTERM');
    server.child.kill('SIGTERM');
    await server.exited();
    expect(server.child.exitCode).toBe(0);
    const help = start('ivshmem-server.js', ['-h']);
    await help.exited();
    expect(help.out()).toMatch(/--state-table SLOTS .*\n.*gone/);
  });

  it('refuses a --stats-interval that is not a positive number of seconds, and documents it', async () => {
    for (const bad of ['0', '-1', 'soon']) {
      const p = start('ivshmem-server.js', ['-F', `--stats-interval=${bad}`]);
      await p.exited();
      expect(p.child.exitCode).toBe(1);
      expect(p.out()).toContain('--stats-interval takes a positive number of seconds');
    }
    const help = start('ivshmem-server.js', ['-h']);
    await help.exited();
    expect(help.out()).toMatch(/--stats-interval SECS .*\n.*SIGUSR2/);
  });
});
