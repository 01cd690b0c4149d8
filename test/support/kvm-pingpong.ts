// One side of a KVM doorbell ping-pong, run in a worker thread (the vCPU's own thread): a
// KvmMonitor with an MSI-X device joined to an ivshmem server, and the guest of
// kvm-msi-guest.ts. Shared by test/monitors/kvm-msi.test.ts (through the kvm bundle and
// kvm-pingpong-worker.mjs) and bench/kvm-pingpong.bench.ts. Messages on `port`:
//   → { type: 'ready', id, kickFd, msixctl, irqfds }   after the guest's firmware/driver phase
//   ← { op: 'go', peer, rounds }                        phase 2 against `peer` (again and again)
//   → { type: 'done', done, seen, irqs, ns, stats, counters, irqfds, kicks }
//   ← { op: 'close' }  → { type: 'closed' }
//   → { type: 'fatal', error }
// The host stops a guest that waits forever by signalling its kickFd from any thread.
import { Kvm } from '../../src/monitors/kvm/kvm.js';
import { KvmMonitor } from '../../src/monitors/kvm/monitor.js';
import type { IvshmemDevice } from '../../src/device/device.js';
import { buildMsiGuest, loadMsiGuest } from './kvm-msi-guest.js';
import type { PingPongRole } from './kvm-msi-guest.js';

export interface PingPongConfig {
  socketPath: string;
  role: PingPongRole;
  /** The inbound fast path (irqfd) and the outbound one (ioeventfd). */
  irqfd: boolean;
  ioeventfd: boolean;
}

export interface PingPongPort {
  postMessage(message: unknown): void;
  on(event: 'message', listener: (message: { op: string; peer?: number; rounds?: number }) => void): unknown;
}

export async function runPingPongPeer(config: PingPongConfig, port: PingPongPort): Promise<void> {
  let kvm: Kvm | undefined;
  let monitor: KvmMonitor | undefined;
  let device: IvshmemDevice | undefined;
  const close = () => {
    device?.close();
    monitor?.close();
    kvm?.close();
    device = monitor = kvm = undefined;
  };
  try {
    kvm = Kvm.open();
    monitor = new KvmMonitor(kvm, { irqfd: config.irqfd, ioeventfd: config.ioeventfd });
    device = await monitor.createDevice({ mode: 'doorbell', vectors: 1, server: config.socketPath });
    const program = buildMsiGuest(config.role);
    const word = loadMsiGuest(monitor, program, 0, 0);
    const phase1 = monitor.run();
    if (phase1.done !== 1) throw new Error(`the guest's setup ended with ${phase1.done}`);
    port.postMessage({
      type: 'ready',
      id: device.id,
      kickFd: monitor.kickFd,
      msixctl: word('msixctl'),
      irqfds: monitor.irqfds.length,
    });

    port.on('message', async (m) => {
      try {
        if (m.op === 'go') {
          const end = Date.now() + 10_000;
          while (device!.peerVectors(m.peer!) === 0) {
            if (Date.now() > end) throw new Error(`peer ${m.peer} never appeared`);
            await new Promise((r) => setTimeout(r, 2));
          }
          const ram = new DataView(monitor!.ram.buffer);
          ram.setUint32(program.address('doorbell'), (m.peer! << 16) >>> 0, true);
          ram.setUint32(program.address('rounds'), m.rounds!, true);
          const t0 = process.hrtime.bigint();
          const r = monitor!.run(Number.MAX_SAFE_INTEGER);
          const ns = Number(process.hrtime.bigint() - t0);
          port.postMessage({
            type: 'done',
            done: r.done,
            seen: word('seen'),
            irqs: word('irqs'),
            ns,
            stats: { ...monitor!.stats, mmio: [...monitor!.stats.mmio] },
            counters: device!.counters(),
            irqfds: monitor!.irqfds.length,
          });
        } else if (m.op === 'close') {
          close();
          port.postMessage({ type: 'closed' });
        }
      } catch (error) {
        port.postMessage({ type: 'fatal', error: String((error as Error)?.stack ?? error) });
      }
    });
  } catch (error) {
    close();
    port.postMessage({ type: 'fatal', error: String((error as Error)?.stack ?? error) });
  }
}
