// Guest A of monitors/kvm-peers.test.ts (b): a KVM guest (KvmMonitor + an intx IvshmemDevice) joined to the
// parent's ivshmem server, in its own process, driven over IPC. Plain JavaScript: it runs the
// bundle test/support/kvm-bundle.ts builds (src/kvm + test/support/kvm-guest.ts).
//
//   node kvm-peer-child.mjs BUNDLE SERVER_SOCKET      (spawned with an 'ipc' channel)
//
// Child → parent: { type: 'ready', id } once the device has joined; { type: 'fatal', error }.
// Parent → child:
//   { op: 'ring', peer, value, offset }  waits until the device knows `peer`, then runs phase 1 of
//       the guest: it stores `value` into BAR2 at `offset` and rings peer's vector 0. Answer:
//       { type: 'rang', done, bar2Mapped, doorbellsSent, bar2Exits } or { type: 'fatal', error }.
//   { op: 'stop' }  closes device, VM and /dev/kvm; the child exits 0.
// The child also exits when its parent goes away (IPC disconnect) and after a hard lifetime.
const LIFETIME_MS = 60_000;
const [bundle, socketPath] = process.argv.slice(2);
if (!bundle || !socketPath || typeof process.send !== 'function') {
  console.error('usage: node kvm-peer-child.mjs BUNDLE SERVER_SOCKET (with an IPC channel)');
  process.exit(2);
}
setTimeout(() => {
  console.error(`kvm-peer-child: still running after ${LIFETIME_MS} ms, exiting`);
  process.exit(3);
}, LIFETIME_MS).unref();

const { Kvm, KvmMonitor, buildGuest, loadGuest, IRQ } = await import(bundle);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let kvm;
let monitor;
let device;
function cleanUp() {
  // Each close runs even when another threw: the child is exiting and must leave nothing open.
  for (const handle of [device, monitor, kvm]) {
    try {
      handle?.close();
    } catch {
      // already closed, or half made: nothing more to release
    }
  }
  device = monitor = kvm = undefined;
}

process.on('disconnect', () => {
  cleanUp();
  process.exit(0);
});

try {
  kvm = Kvm.open();
  monitor = new KvmMonitor(kvm, { irq: IRQ });
  device = await monitor.createDevice({ mode: 'intx', vectors: 1, server: socketPath });
  process.send({ type: 'ready', id: device.id });
} catch (error) {
  process.send({ type: 'fatal', error: String(error?.stack ?? error) });
  cleanUp();
  process.exit(1);
}

process.on('message', async (m) => {
  try {
    if (m.op === 'ring') {
      const end = Date.now() + 10_000;
      while (device.peerVectors(m.peer) === 0) {
        if (Date.now() > end) throw new Error(`peer ${m.peer} never appeared (device ${device.id})`);
        await sleep(5);
      }
      loadGuest(monitor, buildGuest({ value: m.value, writeAt: m.offset }), (m.peer << 16) | 0);
      const { done } = monitor.run(); // synchronous: the vCPU runs on this thread until OUT done
      process.send({
        type: 'rang',
        done,
        bar2Mapped: monitor.bar2Mapped,
        doorbellsSent: device.counters().doorbellsSent,
        bar2Exits: monitor.stats.mmio[2],
      });
    } else if (m.op === 'stop') {
      cleanUp();
      process.disconnect();
    }
  } catch (error) {
    process.send({ type: 'fatal', error: String(error?.stack ?? error) });
  }
});
