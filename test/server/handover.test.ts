// Zero-downtime restart: a running ivshmem server hands its listening socket, memory, clients and
// eventfds to a successor (src/server/handover.ts), in one process and between real server
// processes, and the peers notice nothing — no leave, no join, same ids, doorbells still ring,
// newcomers and leavers announced by the successor. A successor that gives up midway leaves the
// old server serving. And a client with `reconnect` rejoins a server restarted after SIGKILL.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { IvshmemClient } from '../../src/client/ivshmem-client.js';
import { IvshmemDevice } from '../../src/device/device.js';
import { native } from '../../src/os/binding.js';
import { UnixListener, UnixSocket } from '../../src/os/unix-socket.js';
import { HandoverOffer, takeOver } from '../../src/server/handover.js';
import { IvshmemServer } from '../../src/server/ivshmem-server.js';
import { runNewestFirst } from '../support/cleanups.js';
import { killAfterTest, killStartedProcesses, startCli } from '../support/cli-process.js';
import { enableMsix, programVector } from '../support/device-harness.js';
import { openFdCount } from '../support/fd-leaks.js';
import { QEMU_BAR0, setUpQemuDoorbell } from '../support/qemu-peer.js';
import { DEFAULT_QEMU, QTest, qemuUnavailableReason } from '../support/qtest.js';
import { until } from '../support/until.js';

const QEMU = process.env.QEMU_SYSTEM_X86_64 ?? DEFAULT_QEMU;
const qemuMissing = qemuUnavailableReason(QEMU);
if (qemuMissing !== null) console.warn(`server/handover.test.ts: skipping the QEMU hand-over test: ${qemuMissing}`);

const HELLO = (0x49565348n << 32n) | 1n;
let dir: string;
let n = 0;
const cleanups: (() => void)[] = [];
const cleanupFailures: string[] = [];
const shmName = () => `ivshmem-test-handover-${process.pid}-${n++}`;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ivshmem-handover-'));
});
afterEach(async () => {
  await runNewestFirst(cleanups, cleanupFailures);
  killStartedProcesses();
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  for (const f of readdirSync('/dev/shm'))
    if (f.startsWith(`ivshmem-test-handover-${process.pid}-`)) rmSync(join('/dev/shm', f));
  expect(cleanupFailures, 'cleanup errors').toEqual([]);
});

const server = (args: string[]) => startCli('ivshmem-server.js', ['-F', '-v', ...args], { waitMs: 10_000 });

// A peer that records everything the server tells it.
async function client(path: string, options = {}, serverVectors = 2) {
  const c = await IvshmemClient.connect(path, { vectors: 2, ...options });
  const events: string[] = [];
  const interrupts: number[] = [0, 0];
  c.on('join', (p) => events.push(`join ${p}`));
  c.on('leave', (p) => events.push(`leave ${p}`));
  c.on('close', (r) => events.push(`close ${r}`));
  c.on('disconnect', () => events.push('disconnect'));
  c.on('reconnect', (id) => events.push(`reconnect ${id}`));
  c.on('interrupt', (v, count) => (interrupts[v] += count));
  cleanups.push(() => c.close());
  // Setup ends with our own vectors: what came before it (the peers already there) is not news.
  await until(() => c.connection.ownVectors.length === serverVectors, 'the client set up');
  events.length = 0;
  return { c, events, interrupts };
}

// A device on the server with MSI-X set up, recording the MSIs its doorbells raise.
async function device(path: string) {
  const msi: number[] = [];
  const events: string[] = [];
  const d = await IvshmemDevice.create({
    mode: 'doorbell',
    vectors: 2,
    server: path,
    transport: { setIrqLevel() {}, sendMsi: (_address, _data, vector) => msi.push(vector) },
  });
  cleanups.push(() => d.close());
  enableMsix(d);
  for (let v = 0; v < 2; v++) programVector(d, v, 0xfee00000, 0x40 + v, false);
  d.connection!.on('peer-vector', (p, v) => v === 0 && events.push(`join ${p}`));
  d.connection!.on('peer-left', (p) => events.push(`leave ${p}`));
  d.connection!.on('close', (r) => events.push(`close ${r}`));
  await until(() => d.ownVectorFds.length === 2, 'the device set up');
  events.length = 0;
  return { d, msi, events };
}

const ring = (d: IvshmemDevice, peer: number, vector: number) => d.mmioWrite(0, 0x0c, 4, (peer << 16) | vector);

describe('hand-over between two servers in one process', () => {
  /** A server on a fresh socket, offering itself for hand-over on a fresh control socket. */
  function offering(vectors: number, options?: Parameters<typeof HandoverOffer.listen>[2]) {
    const sock = join(dir, `s${n++}.sock`);
    const ctl = join(dir, `c${n++}.ctl`);
    const old = IvshmemServer.start({ socketPath: sock, memory: { shm: shmName() }, size: 1 << 20, vectors });
    cleanups.push(() => old.close());
    const offer = HandoverOffer.listen(old, ctl, options);
    cleanups.push(() => offer.close());
    return { sock, ctl, old, offer };
  }
  it('moves every peer to the successor unnoticed; the successor serves newcomers and leavers', async () => {
    const sock = join(dir, `s${n++}.sock`);
    const ctl = join(dir, `c${n++}.ctl`);
    const shm = shmName();
    const old = IvshmemServer.start({ socketPath: sock, memory: { shm }, size: 1 << 20, vectors: 2 });
    cleanups.push(() => old.close());
    const offer = HandoverOffer.listen(old, ctl);
    cleanups.push(() => offer.close());
    const a = await client(sock);
    const b = await client(sock);
    await until(() => a.events.includes('join 1'), 'a hearing of b');
    let handedOver = false;
    offer.on('handed-over', () => (handedOver = true));

    const { server: next, offer: nextOffer } = await takeOver(ctl);
    cleanups.push(() => next.close());
    cleanups.push(() => nextOffer.close());
    await until(() => handedOver, 'the old server letting go');
    expect(next.peerIds).toEqual([0, 1]);
    expect(next.stats()).toMatchObject({ peers: 2, joins: 2, leaves: 0 });
    // The old one kept the socket path, the shm name and the control path: they are the successor's.
    expect([existsSync(sock), existsSync(`/dev/shm/${shm}`), existsSync(ctl)]).toEqual([true, true, true]);
    expect(old.peerIds).toEqual([]);
    expect(statSync(ctl).mode & 0o777).toBe(0o600); // whoever connects there gets every fd

    a.c.ring(1, 1);
    b.c.ring(0, 0);
    await until(() => b.interrupts[1] === 1 && a.interrupts[0] === 1, 'doorbells across the hand-over');
    const c = await client(sock);
    expect(c.c.id).toBe(2);
    await until(() => c.c.peers.size === 2, 'the newcomer told of everyone');
    expect([...c.c.peers.keys()].sort()).toEqual([0, 1]);
    await until(() => a.events.includes('join 2') && b.events.includes('join 2'), 'the newcomer announced');
    c.c.ring(0, 1);
    await until(() => a.interrupts[1] === 1, 'the newcomer ringing an old peer');
    expect(b.events).toEqual(['join 2']);
    b.c.close();
    await until(() => a.events.includes('leave 1') && c.events.includes('leave 1'), 'the leaver announced');
    expect(a.events).toEqual(['join 1', 'join 2', 'leave 1']);
    expect(next.stats()).toMatchObject({ peers: 2, joins: 3, leaves: 1 });
  });

  it("what happens while the hand-over is under way is the successor's: a hang-up, a newcomer in the backlog", async () => {
    const { sock, ctl, old } = offering(2);
    const a = await client(sock);
    const b = await client(sock);
    await until(() => a.events.includes('join 1'), 'a hearing of b');
    a.events.length = 0;
    // Right as the old server stops reading and accepting: b hangs up, and a newcomer connects.
    let newcomer: Promise<IvshmemClient> | undefined;
    const suspend = old.handoverSuspend.bind(old);
    old.handoverSuspend = () => {
      const state = suspend();
      b.c.close();
      newcomer = IvshmemClient.connect(sock, { vectors: 2 });
      return state;
    };
    const { server: next, offer: nextOffer } = await takeOver(ctl);
    cleanups.push(() => next.close());
    cleanups.push(() => nextOffer.close());
    const c = await newcomer!;
    cleanups.push(() => c.close());
    expect(c.id).toBe(2);
    await until(() => a.events.includes('leave 1') && a.events.includes('join 2'), 'the successor noticing both');
    // (In which order the successor hears of the two is the kernel's to say, as for QEMU's server.)
    expect([...a.events].sort()).toEqual(['join 2', 'leave 1']);
    await until(() => c.peers.size === 1 && c.peers.has(0), 'the newcomer knowing of a alone');
    expect([...c.peers.keys()]).toEqual([0]);
    expect(next.stats()).toMatchObject({ peers: 2, joins: 3, leaves: 1 });
  });

  it('serves on when the successor hangs up midway, and hands over to the next one that asks', async () => {
    const { sock, ctl, old, offer } = offering(1, { timeoutMs: 500 });
    const failures: string[] = [];
    offer.on('handover-failed', (r) => failures.push(r));
    const a = await client(sock, {}, 1);
    const before = openFdCount();

    // A successor that asks, reads a little, and hangs up.
    const quitter = UnixSocket.connect(ctl);
    quitter.send(HELLO);
    await until(() => old.suspended, 'the old server suspending');
    const waiting = IvshmemClient.connect(sock, { vectors: 1 }); // queued in the backlog meanwhile
    await until(() => quitter.receive() !== null, 'part of the state');
    quitter.close();
    await until(() => failures.length === 1 && !old.suspended, 'the old server resuming');
    const w = await waiting;
    cleanups.push(() => w.close());
    expect(w.id).toBe(1);
    await until(() => a.events.includes('join 1'), 'the waiting client served by the old server');

    // One that asks and then says nothing is given up after the timeout.
    const silent = UnixSocket.connect(ctl);
    silent.send(HELLO);
    await until(() => failures.length === 2, 'the silent successor given up', 5000);
    expect(failures[1]).toMatch(/did not finish/);
    silent.close();
    // One that says something else.
    const rude = UnixSocket.connect(ctl);
    rude.send(42n);
    await until(() => failures.length === 3, 'the rude successor refused');
    rude.close();
    expect(old.suspended).toBe(false);
    w.close();
    await until(() => a.events.includes('leave 1'), 'the old server still announcing');
    await until(() => openFdCount() === before, 'no fd left from the failed hand-overs');

    const { server: next, offer: nextOffer } = await takeOver(ctl);
    cleanups.push(() => next.close());
    cleanups.push(() => nextOffer.close());
    expect(next.peerIds).toEqual([0]);
    expect(a.events).toEqual(['join 1', 'leave 1']);
  });

  it('hands over what a slow reader has not read yet: it gets every message, in order, with its fds', async () => {
    const sock = join(dir, `s${n++}.sock`);
    const ctl = join(dir, `c${n++}.ctl`);
    const vectors = 16;
    const old = IvshmemServer.start({ socketPath: sock, memory: { shm: shmName() }, size: 1 << 20, vectors });
    cleanups.push(() => old.close());
    const offer = HandoverOffer.listen(old, ctl);
    cleanups.push(() => offer.close());
    const slow = UnixSocket.connect(sock); // never reads until after the hand-over
    cleanups.push(() => slow.close());
    await until(() => old.peerIds.length === 1, 'the slow reader joining');
    let joined = 0;
    while (old.stats().messagesQueued === 0 && joined < 200) {
      await client(sock, { vectors: 64 }, vectors);
      joined++;
    }
    const queued = old.stats().messagesQueued;
    expect(queued).toBeGreaterThan(0);
    const { server: next, offer: nextOffer } = await takeOver(ctl);
    cleanups.push(() => next.close());
    cleanups.push(() => nextOffer.close());
    expect(next.stats().messagesQueued).toBe(queued);

    // Version, id 0, shm, its own vectors; then each newcomer's vectors: all of it, fds included.
    const expected: [bigint, boolean][] = [
      [0n, false],
      [0n, false],
      [-1n, true],
    ];
    for (let k = 0; k <= joined; k++) for (let v = 0; v < vectors; v++) expected.push([BigInt(k), true]);
    const got: [bigint, boolean][] = [];
    await until(() => {
      for (let m = slow.receive(); m !== null; m = slow.receive()) {
        got.push([m.value, m.fd >= 0]);
        if (m.fd >= 0) native().close(m.fd);
      }
      return got.length >= expected.length;
    }, 'the slow reader reading everything');
    expect(got).toEqual(expected);
    await until(() => next.stats().messagesQueued === 0, 'the successor flushing the queue');
    expect(next.peerIds).toEqual(Array.from({ length: joined + 1 }, (_, i) => i));
  });

  it('a taker that finds nobody offering, or garbage, fails with a coded error and leaks nothing', async () => {
    const before = openFdCount();
    await expect(takeOver(join(dir, 'nobody.ctl'))).rejects.toMatchObject({ code: 'ENOENT' });
    // A fake holder that answers HELLO with something that is not the state.
    const ctl = join(dir, `c${n++}.ctl`);
    const fake = UnixListener.listen(ctl);
    cleanups.push(() => fake.close());
    const taking = takeOver(ctl, { timeoutMs: 3000 });
    let conn: UnixSocket | null = null;
    await until(() => (conn = fake.accept()) !== null, 'the taker connecting');
    conn!.send(7n);
    await expect(taking).rejects.toMatchObject({ code: 'ERR_IVSHMEM_HANDOVER' });
    conn!.close();
    fake.close();
    expect(openFdCount()).toBe(before);
  });
});

describe('hand-over between ivshmem-server processes', () => {
  it('a second process takes over a running one; the peers ring on, see no leave or join, keep their fds', async () => {
    const sock = join(dir, `s${n++}.sock`);
    const ctl = join(dir, `c${n++}.ctl`);
    const shm = shmName();
    const first = server(['-S', sock, '-M', shm, '-l', '1M', '-n', '2', '--handover-socket', ctl]);
    await first.waitFor('listening on');
    const dev = await device(sock);
    const a = await client(sock);
    expect([dev.d.id, a.c.id]).toEqual([0, 1]);
    await until(() => dev.events.includes('join 1'), 'the device hearing of the client');
    const fdsBefore = openFdCount();

    const second = server(['--takeover', ctl]);
    await second.waitFor('took over');
    expect(second.out()).toContain('peers [0, 1]');
    expect(await first.exited()).toBe(0);
    expect(first.out()).toContain('handed over to a successor');
    // The successor holds the shm name's lock now: another server cannot claim the name.
    const intruder = server(['-S', join(dir, `s${n++}.sock`), '-M', shm, '-l', '1M']);
    expect(await intruder.exited()).toBe(1);
    expect(intruder.out()).toContain('ERR_IVSHMEM_IN_USE');

    // Doorbells both ways: the eventfds are the same kernel objects.
    a.c.ring(0, 1);
    ring(dev.d, 1, 0);
    await until(() => dev.msi.includes(1) && a.interrupts[0] === 1, 'doorbells after the hand-over');
    expect(openFdCount()).toBe(fdsBefore);
    expect([...dev.events, '|', ...a.events]).toEqual(['join 1', '|']);

    // The successor announces a newcomer with everyone's eventfds, and a leaver.
    const c = await client(sock);
    expect(c.c.id).toBe(2);
    await until(() => c.c.peers.size === 2 && c.c.connection.ownVectors.length === 2, 'the newcomer told of everyone');
    expect(c.c.peers).toEqual(
      new Map([
        [0, 2],
        [1, 2],
      ]),
    );
    await until(() => dev.events.includes('join 2') && a.events.includes('join 2'), 'the newcomer announced');
    c.c.ring(0, 0);
    ring(dev.d, 2, 1);
    await until(() => dev.msi.includes(0) && c.interrupts[1] === 1, 'the newcomer ringing and rung');
    a.c.close();
    await until(() => dev.events.includes('leave 1') && c.events.includes('leave 1'), 'the leaver announced');

    // And the successor hands over again, on the same control path.
    const third = server(['--takeover', ctl]);
    await third.waitFor('took over');
    expect(third.out()).toContain('peers [0, 2]');
    expect(await second.exited()).toBe(0);
    ring(dev.d, 2, 0);
    await until(() => c.interrupts[0] === 1, 'a doorbell after the second hand-over');
    expect(dev.events).toEqual(['join 1', 'join 2', 'leave 1']);
    expect(c.events).toEqual(['leave 1']);

    third.child.kill('SIGTERM');
    expect(await third.exited()).toBe(0);
    await until(() => dev.events.includes('close the server closed the connection'), 'the device told the server left');
    expect([existsSync(sock), existsSync(ctl), existsSync(`/dev/shm/${shm}`)]).toEqual([false, false, false]);
  });

  it('a takeover that fails leaves the old process serving; the failed successor exits 1', async () => {
    const sock = join(dir, `s${n++}.sock`);
    const ctl = join(dir, `c${n++}.ctl`);
    const first = server(['-S', sock, '-M', shmName(), '-l', '1M', '-n', '2', '--handover-socket', ctl]);
    await first.waitFor('listening on');
    const a = await client(sock);
    // A successor dying mid-takeover: it asked, then its connection went.
    const quitter = UnixSocket.connect(ctl);
    quitter.send(HELLO);
    await until(() => quitter.receive() !== null, 'part of the state');
    quitter.close();
    await first.waitFor('a takeover failed');
    const b = await client(sock);
    expect(b.c.id).toBe(1);
    await until(() => a.events.includes('join 1'), 'the old server announcing a newcomer');
    b.c.ring(0, 1);
    await until(() => a.interrupts[1] === 1, 'a doorbell through the old server');
    // A successor pointed at a path where nobody offers fails and exits 1.
    const lost = server(['--takeover', join(dir, 'nobody.ctl')]);
    expect(await lost.exited()).toBe(1);
    expect(lost.out()).toContain('cannot take over');
    expect(first.child.exitCode).toBe(null);
    expect(a.events).toEqual(['join 1']);
    const help = server(['-h']);
    expect(await help.exited()).toBe(0);
    expect(help.out()).toMatch(/--handover-socket PATH[\s\S]*--takeover PATH/);
  });
});

describe('an old server crashing in the middle of a hand-over', () => {
  it('the successor, holding everything, serves in its place: the peers notice nothing', async () => {
    const sock = join(dir, `s${n++}.sock`);
    const ctl = join(dir, `c${n++}.ctl`);
    const holder = spawn(process.execPath, [
      fileURLToPath(new URL('../support/handover-crashing-holder.mjs', import.meta.url)),
      sock,
      ctl,
      shmName(),
    ]);
    killAfterTest(holder);
    let said = '';
    holder.stdout.on('data', (d) => (said += d));
    holder.stderr.on('data', (d) => (said += d));
    await until(() => said.includes('ready'), `the holder starting; it said: ${said}`, 10_000);
    const a = await client(sock);
    const b = await client(sock);
    await until(() => a.events.includes('join 1'), 'a hearing of b');
    a.events.length = 0;
    const fdsBefore = openFdCount();

    const next = server(['--takeover', ctl]);
    await next.waitFor('took over');
    // The successor saw the holder dead (gone or a zombie); this process reaps it in its own time.
    await until(() => holder.signalCode !== null || holder.exitCode !== null, 'the holder reaped', 5000);
    expect(holder.signalCode).toBe('SIGKILL');
    expect(next.out()).toMatch(/died before confirming the hand-over: serving in its place/);
    expect(next.out()).toContain('peers [0, 1]');
    a.c.ring(1, 1);
    b.c.ring(0, 0);
    await until(() => b.interrupts[1] === 1 && a.interrupts[0] === 1, 'doorbells after the crash');
    const c = await client(sock);
    expect(c.c.id).toBe(2);
    await until(() => a.events.includes('join 2') && b.events.includes('join 2'), 'the newcomer announced');
    expect([a.events, b.events]).toEqual([['join 2'], ['join 2']]);
    c.c.close();
    await until(() => a.events.includes('leave 2'), 'the leaver announced');
    expect(openFdCount()).toBe(fdsBefore);
  });
});

describe.skipIf(qemuMissing !== null)("hand-over under QEMU's ivshmem-doorbell", () => {
  it('a QEMU connected before the hand-over rings and is rung after it, and hears of a newcomer', async () => {
    const sock = join(dir, `s${n++}.sock`);
    const ctl = join(dir, `c${n++}.ctl`);
    const first = server(['-S', sock, '-M', shmName(), '-l', '1M', '-n', '2', '--handover-socket', ctl]);
    await first.waitFor('listening on');
    const q = await QTest.start(
      ['-chardev', `socket,id=chr0,path=${sock}`, '-device', 'ivshmem-doorbell,chardev=chr0,vectors=2'],
      { qemu: QEMU, lifetimeS: 60 },
    );
    try {
      const { ivPosition, pba } = await setUpQemuDoorbell(q);
      expect(ivPosition).toBe(0);
      const pending = async (v: number) => (Number(await q.read(pba, 4)) & (1 << v)) !== 0;
      const a = await client(sock);
      expect(a.c.id).toBe(1);

      const second = server(['--takeover', ctl]);
      await second.waitFor('took over');
      expect(second.out()).toContain('peers [0, 1]');
      expect(await first.exited()).toBe(0);

      // Our client rings QEMU; QEMU rings our client: both through eventfds the old server made.
      expect(await pending(1)).toBe(false);
      a.c.ring(0, 1);
      await until(() => pending(1), "QEMU's vector 1 pending after the hand-over");
      await q.write(QEMU_BAR0 + 12, 4, (1 << 16) | 0);
      await until(() => a.interrupts[0] === 1, 'QEMU ringing our client after the hand-over');
      // A newcomer served by the successor is announced to QEMU, which can ring it.
      const c = await client(sock);
      expect(c.c.id).toBe(2);
      await until(() => c.c.peers.has(0), 'the newcomer told of QEMU');
      await until(async () => {
        await q.write(QEMU_BAR0 + 12, 4, (2 << 16) | 1);
        return c.interrupts[1] > 0;
      }, 'QEMU ringing the newcomer (once it has read the announcement)');
      c.c.ring(0, 0);
      await until(() => pending(0), "QEMU's vector 0 pending, rung by the newcomer");
      expect(a.events).toEqual(['join 2']);
    } finally {
      await q.close();
    }
  });
});

describe('when a server dies outright', () => {
  it('a device keeps its memory and fds; a client with reconnect rejoins the restarted server with a new id', async () => {
    const sock = join(dir, `s${n++}.sock`);
    const shm = shmName();
    const args = ['-S', sock, '-M', shm, '-l', '1M', '-n', '2'];
    const first = server(args);
    await first.waitFor('listening on');
    const dev = await device(sock);
    const r = await client(sock, { reconnect: { intervalMs: 50 } });
    const plain = await client(sock);
    expect([dev.d.id, r.c.id, plain.c.id]).toEqual([0, 1, 2]);
    new Uint8Array(dev.d.sharedMemory.buffer)[0] = 0xab;

    first.child.kill('SIGKILL');
    await first.exited();
    await until(
      () => r.events.includes('disconnect') && plain.events.some((e) => e.startsWith('close')),
      'the peers noticing',
    );
    await until(() => dev.events.some((e) => e.startsWith('close')), 'the device noticing');
    // As QEMU's device: still the same id, memory and doorbells among the peers it knew.
    expect(dev.d.id).toBe(0);
    expect(new Uint8Array(dev.d.sharedMemory.buffer)[0]).toBe(0xab);
    plain.c.ring(0, 1);
    await until(() => dev.msi.includes(1), 'a doorbell with the server gone');

    // Restarted on the same path (the stale socket is replaced); the reconnecting client joins.
    const second = server(args);
    await second.waitFor('listening on');
    await until(() => r.events.some((e) => e.startsWith('reconnect')), 'the client reconnecting', 5000);
    expect(r.events).toEqual(['join 2', 'disconnect', `reconnect ${r.c.id}`]);
    expect(r.c.id).toBe(0); // the new server counts from 0 again
    // The shm object outlived the SIGKILLed server, so the new one serves the same memory.
    expect(new Uint8Array(r.c.connection.memory!.map())[0]).toBe(0xab);
    const other = await client(sock);
    await until(() => r.events.includes('join 1'), 'the reconnected client hearing of a newcomer');
    other.c.ring(0, 1);
    await until(() => r.interrupts[1] === 1, 'the reconnected client rung');
    expect(dev.events.filter((e) => e.startsWith('join'))).toEqual(['join 1', 'join 2']); // it does not rejoin
    r.c.close();
    expect(r.events.at(-1)).toBe('close closed');
  });
});
