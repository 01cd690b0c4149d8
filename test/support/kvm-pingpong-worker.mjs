// A worker thread for test/monitors/kvm-msi.test.ts: one side of the KVM doorbell ping-pong
// (test/support/kvm-pingpong.ts), from the kvm bundle named in workerData.bundle.
import { parentPort, workerData } from 'node:worker_threads';

const { runPingPongPeer } = await import(workerData.bundle);
await runPingPongPeer(workerData.config, parentPort);
