// MSI-X end to end on KVM: a real-mode guest (test/support/kvm-msi-guest.ts) enables its LAPIC,
// programs the device's MSI-X table and sleeps in HLT; a peer's doorbell wakes it with an MSI.
// Both inbound paths are checked to give the same guest-visible result: the WASM path (the
// monitor's kicker gets the vCPU out of KVM_RUN, the device core sends the message through
// KVM_SIGNAL_MSI) and the irqfd fast path (KVM injects it; the monitor never runs). Then two KVM
// guests, each on its own worker thread, ping-pong through our server on both paths.
// Skipped (with a warning) where /dev/kvm cannot be opened.
import { spawn } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import { afterAll, describe, expect, it } from 'vitest';
import { IvshmemClient } from '../../src/client/ivshmem-client.js';
import { Kvm } from '../../src/monitors/kvm/kvm.js';
import { KvmMonitor } from '../../src/monitors/kvm/monitor.js';
import { expectNoFdLeak } from '../support/fd-leaks.js';
import { Inbox } from '../support/inbox.js';
import { kvmBundle } from '../support/kvm-bundle.js';
import { serverSuite } from '../support/server-suite.js';
import { LAPIC_GPA, MSI_VECTOR, buildMsiGuest, loadMsiGuest } from '../support/kvm-msi-guest.js';
import { until } from '../support/until.js';

let kvm: Kvm | undefined;
try {
  kvm = Kvm.open();
} catch (err) {
  console.warn(
    `monitors/kvm-msi.test.ts: skipped, /dev/kvm cannot be opened (${(err as { code?: string }).code ?? err})`,
  );
}

const SHM_SIZE = 0x10000;
const WORKER = new URL('../support/kvm-pingpong-worker.mjs', import.meta.url);

describe.skipIf(kvm === undefined)('KVM: MSI-X into a guest that enabled its LAPIC, WASM path and irqfd path', () => {
  // esbuild's service process (the workers' bundle) stays for the life of the test process.
  expectNoFdLeak(() => kvmBundle());
  const { cleanups, startServer } = serverSuite({ name: 'kvm-msi', size: SHM_SIZE, vectors: 1 });
  afterAll(() => kvm?.close());

  for (const irqfd of [false, true]) {
    it(`a host client rings the halted guest; it takes MSI vector 0x${MSI_VECTOR.toString(16)} and rings back (${irqfd ? 'irqfd' : 'WASM'} path)`, async () => {
      const server = startServer();
      const client = await IvshmemClient.connect(server.socketPath, { vectors: 1 });
      cleanups.push(() => client.close());
      const interrupts: number[] = [];
      client.on('interrupt', (vector) => interrupts.push(vector));
      const monitor = new KvmMonitor(kvm!, { irqfd });
      cleanups.push(() => monitor.close());
      expect(monitor.irqfd).toBe(irqfd);
      const device = await monitor.createDevice({ mode: 'doorbell', vectors: 1, server: server.socketPath });
      cleanups.push(() => device.close());
      expect(device.vectorWait).toBe('manual');
      await until(
        () => device.peerVectors(client.id) === 1 && client.peers.has(device.id),
        'the device and the client hear of each other',
      );

      const program = buildMsiGuest('responder');
      const word = loadMsiGuest(monitor, program, client.id << 16, 1);
      expect(monitor.irqfds, 'no irqfd before the guest enables MSI-X').toEqual([]);
      expect(monitor.run().done).toBe(1);
      expect(word('ivposition')).toBe(device.id);
      expect(word('msixctl') >>> 31, 'MSI-X Enable, as the guest read it back').toBe(1);
      expect((word('msixctl') >>> 16) & 0x7ff, 'Table Size - 1').toBe(0);
      expect(monitor.irqfds).toEqual(
        irqfd ? [{ vector: 0, gsi: 24, fd: device.ownVectorFds[0], address: LAPIC_GPA, data: MSI_VECTOR }] : [],
      );

      client.ring(device.id, 0);
      expect(monitor.run().done, 'the guest woke, took the interrupt and rang back').toBe(2);
      expect(word('irqs')).toBe(1);
      expect(word('seen')).toBe(1);
      await until(() => interrupts.length === 1, "the guest's answer reaches the client");
      expect(interrupts).toEqual([0]);
      expect(device.counters().doorbellsSent).toBe(1);
      if (irqfd) {
        // KVM delivered it: neither the monitor nor the device core saw the signal.
        expect(monitor.stats.vectorWakeups).toBe(0);
        expect(monitor.stats.msiSignalled).toBe(0);
        expect(device.counters().interruptsDelivered).toBe(0);
      } else {
        expect(monitor.stats.vectorWakeups).toBe(1);
        expect(monitor.stats.msiSignalled).toBe(1);
        expect(monitor.stats.msiBlocked, 'the LAPIC was on').toBe(0);
        expect(device.counters().interruptsDelivered).toBe(1);
      }
    });
  }

  for (const how of ['the server hangs up, then the device closes', 'the device is handed over'] as const) {
    it(`${how}: the monitor unregisters every irqfd, ioeventfd and polled fd first, and will not run the guest again`, async () => {
      const server = startServer();
      const client = await IvshmemClient.connect(server.socketPath, { vectors: 1 });
      cleanups.push(() => client.close());
      const monitor = new KvmMonitor(kvm!, { irqfd: true, ioeventfd: true });
      cleanups.push(() => monitor.close());
      const device = await monitor.createDevice({ mode: 'doorbell', vectors: 1, server: server.socketPath });
      cleanups.push(() => device.close());
      await until(() => device.peerVectors(client.id) === 1, 'the device hears of the client');
      // The monitor follows the device through its transport hooks alone: the device's link is the
      // connection's only listener.
      for (const event of ['peer-vector', 'own-vector', 'peer-left', 'releasing'])
        expect(device.connection!.listenerCount(event), event).toBe(1);
      loadMsiGuest(monitor, buildMsiGuest('responder'), client.id << 16, 1);
      expect(monitor.run().done).toBe(1);
      expect(monitor.irqfds.length).toBe(1);
      expect(monitor.ioeventfds.length, 'the client, and ourselves').toBe(2);
      const assigned = monitor.stats.ioeventfdsAssigned;

      if (how === 'the device is handed over') {
        const handover = device.handOver();
        // The fds are still open here (they travel next): nothing of the old VM may hold them.
        expect(monitor.irqfds).toEqual([]);
        expect(monitor.ioeventfds).toEqual([]);
        expect(handover.connection.fds.length).toBe(4);
      } else {
        server.close(); // the connection reports the hang-up while its fds stay usable
        await until(() => device.connection?.serverGone === true, 'the hang-up');
        expect(monitor.irqfds.length, 'still delivering: the fds live on after a hang-up').toBe(1);
        device.close();
        expect(monitor.irqfds).toEqual([]);
        expect(monitor.ioeventfds).toEqual([]);
      }
      expect(monitor.stats.ioeventfdsDeassigned).toBe(assigned);
      expect(monitor.stats.ioeventfdErrors).toBe(0);
      expect(monitor.bar2Mapped, 'its memory is no longer in the guest').toBe(false);
      expect(() => monitor.run()).toThrow(/closed or handed over/);
    });
  }

  it('another process stops a guest that waits forever by signalling kickFd; run() returns done: null', async () => {
    const server = startServer();
    const monitor = new KvmMonitor(kvm!);
    cleanups.push(() => monitor.close());
    const device = await monitor.createDevice({ mode: 'doorbell', vectors: 1, server: server.socketPath });
    cleanups.push(() => device.close());
    const word = loadMsiGuest(monitor, buildMsiGuest('responder'), 0, 1);
    expect(monitor.run().done).toBe(1);
    // python writes 1 to the kick eventfd (its fd 3) 200 ms from now, while this thread is in KVM_RUN.
    const child = spawn('python3', ['-c', 'import os,time; time.sleep(0.2); os.write(3, (1).to_bytes(8, "little"))'], {
      stdio: ['ignore', 'ignore', 'inherit', monitor.kickFd],
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    const r = monitor.run();
    expect(r.done).toBe(null);
    expect(await exited).toBe(0);
    expect(word('irqs'), 'no interrupt came').toBe(0);
    expect(monitor.stats.kicks).toBeGreaterThanOrEqual(1);
  });

  it('runAsync: while the guest sleeps in HLT the event loop still runs — a timer fires, a new peer joins, rings, and the guest answers it', async () => {
    const server = startServer();
    const monitor = new KvmMonitor(kvm!);
    cleanups.push(() => monitor.close());
    const device = await monitor.createDevice({ mode: 'doorbell', vectors: 1, server: server.socketPath });
    cleanups.push(() => device.close());
    const program = buildMsiGuest('responder');
    const word = loadMsiGuest(monitor, program, 0, 1);
    expect(monitor.run().done).toBe(1);
    const ram = new DataView(monitor.ram.buffer);

    // Everything below happens on this thread, in the gaps runAsync leaves the loop.
    const host = (async () => {
      await new Promise((r) => setTimeout(r, 50));
      const client = await IvshmemClient.connect(server.socketPath, { vectors: 1 });
      cleanups.push(() => client.close());
      await until(
        () => device.peerVectors(client.id) === 1 && client.peers.has(device.id),
        'the join, served by the loop',
      );
      ram.setUint32(program.address('doorbell'), client.id << 16, true);
      const answered = new Promise((resolve) => client.once('interrupt', resolve));
      client.ring(device.id, 0);
      return answered;
    })();
    const r = await monitor.runAsync();
    expect(r.done).toBe(2);
    expect(word('irqs')).toBe(1);
    expect(await host, "the guest's answer, on vector 0").toBe(0);
    expect(monitor.stats.vectorWakeups).toBe(1);
  });

  for (const fast of [false, true]) {
    it(`two KVM guests on two worker threads ping-pong 200 times through our server (${fast ? 'ioeventfd + irqfd' : 'WASM'} path)`, async () => {
      const server = startServer();
      const rounds = 200;
      const spawnPeer = (role: 'initiator' | 'responder') => {
        const worker = new Worker(WORKER, {
          workerData: {
            bundle: kvmBundle(),
            config: { socketPath: server.socketPath, role, irqfd: fast, ioeventfd: fast },
          },
        });
        const inbox = new Inbox<Record<string, unknown>>({ name: role, timeoutMs: 30_000 });
        worker.on('message', inbox.push);
        worker.on('error', (e) => inbox.push({ type: 'fatal', error: String(e) }));
        const next = async (type: string) =>
          (await inbox.next(type)) as Record<string, number> & {
            stats: Record<string, number>;
            counters: Record<string, number>;
          };
        cleanups.push(async () => {
          worker.postMessage({ op: 'close' });
          await Promise.race([next('closed').catch(() => undefined), new Promise((r) => setTimeout(r, 5000))]);
          await worker.terminate();
        });
        return { worker, next };
      };
      const a = spawnPeer('initiator');
      const b = spawnPeer('responder');
      const [readyA, readyB] = [await a.next('ready'), await b.next('ready')];
      expect(readyA.irqfds).toBe(fast ? 1 : 0);
      expect(readyB.irqfds).toBe(fast ? 1 : 0);
      b.worker.postMessage({ op: 'go', peer: readyA.id, rounds });
      a.worker.postMessage({ op: 'go', peer: readyB.id, rounds });
      const [doneA, doneB] = [await a.next('done'), await b.next('done')];
      for (const [name, d] of [
        ['A', doneA],
        ['B', doneB],
      ] as const) {
        expect(d.done, `${name} finished its rounds`).toBe(2);
        expect(d.seen, `${name}: interrupts waited for`).toBe(rounds);
        expect(d.irqs, `${name}: interrupts taken`).toBe(rounds);
        if (fast) {
          expect(d.stats.doorbellExits, `${name}: every ring stayed in the kernel`).toBe(0);
          expect(d.stats.vectorWakeups, `${name}: every interrupt came from KVM`).toBe(0);
          expect(d.stats.msiSignalled).toBe(0);
        } else {
          expect(d.stats.doorbellExits, `${name}: every ring exited to the WASM core`).toBe(rounds);
          expect(d.counters.doorbellsSent).toBe(rounds);
          expect(d.stats.vectorWakeups, `${name}: every interrupt went through the kicker and the core`).toBe(rounds);
          expect(d.stats.msiSignalled).toBe(rounds);
        }
      }
    }, 60_000);
  }
});
