// A worker thread for test/device/directory.test.ts: one VM's ivshmem device joined to a peer
// directory, driven like a guest driver (MSI-X programmed, or INTx unmasked). It writes messages
// into its peers' mailboxes in BAR2 and rings them; on each interrupt it reads its own mailbox and
// reports what it found. It runs with IVSHMEM_NATIVE_ADDON naming a file that does not exist, so
// any use of the native addon would fail it.
import { parentPort, workerData } from 'node:worker_threads';

const { IvshmemDevice, EventFd } = await import(workerData.bundle);
const { port, mode, vectors, vectorWait = 'loop' } = workerData;
const MAILBOX = 64; // bytes per peer id in BAR2

let device;
const mailbox = (id) => id * MAILBOX;
const report = (vector) =>
  parentPort.postMessage({ type: 'interrupt', vector, value: device.mmioRead(2, mailbox(device.id), 4) });

device = await IvshmemDevice.create({
  mode,
  vectors,
  vectorWait,
  directory: port,
  transport: {
    setIrqLevel(level) {
      parentPort.postMessage({ type: 'irq', level });
      if (level === 1) report(0);
    },
    sendMsi(_address, _data, vector) {
      report(vector);
    },
  },
});
if (mode === 'doorbell') {
  device.configWrite(0x04, 2, 0x0006); // memory decoding, bus mastering
  device.configWrite(0x42, 2, 0x8000); // MSI-X enable
  for (let v = 0; v < vectors; v++) {
    device.mmioWrite(1, v * 16, 4, 0xfee00000);
    device.mmioWrite(1, v * 16 + 8, 4, 0x40 + v);
    device.mmioWrite(1, v * 16 + 12, 4, 0);
  }
} else {
  device.mmioWrite(0, 0x00, 4, 1); // IntrMask: the doorbell's bit
}
parentPort.postMessage({ type: 'ready', id: device.id, size: device.sharedMemory.size });

parentPort.on('message', (m) => {
  if (m.type === 'send') {
    device.mmioWrite(2, mailbox(m.peer), 4, m.value);
    device.mmioWrite(0, 0x0c, 4, (m.peer << 16) | m.vector);
  } else if (m.type === 'ack') {
    parentPort.postMessage({ type: 'acked', status: device.mmioRead(0, 0x04, 4) }); // reading IntrStatus clears it
  } else if (m.type === 'stats') {
    parentPort.postMessage({
      type: 'stats',
      counters: device.counters(),
      vectors: device.vectorCounters(),
      peers: [...device.directory.peers.keys()],
      peerVectors: m.peer === undefined ? -1 : device.peerVectors(m.peer),
    });
  } else if (m.type === 'block') {
    // vectorWait 'manual', as a vCPU thread waits: this thread sleeps in Atomics.wait until rung.
    const reported = device.ownSignals.waitBlocking(m.timeoutMs, (vector) => device.fireVector(vector));
    parentPort.postMessage({ type: 'woke', reported });
  } else if (m.type === 'probe-addon') {
    // Proof that the override holds in this thread: anything that needs the addon fails here.
    try {
      EventFd.create().close();
      parentPort.postMessage({ type: 'probed', code: null });
    } catch (err) {
      parentPort.postMessage({ type: 'probed', code: err.code });
    }
  } else if (m.type === 'close') {
    device.close();
    parentPort.postMessage({ type: 'closed', released: device.released });
  }
});
