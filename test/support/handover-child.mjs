// The receiving side of test/device/handover.test.ts: a process that takes over an ivshmem device
// another process handed over. It inherits the connection's fds as stdio 4.. (3 is the IPC channel)
// and gets the description, the state and the master flag over IPC. Plain JavaScript: it runs the
// bundle of test/support/device-bundle.ts.
//
//   node handover-child.mjs BUNDLE        (spawned with stdio [.., .., .., 'ipc', fd, fd, ...])
//
// Parent → child: { op: 'adopt', description, state: number[], master, vectors }
//                 { op: 'read', bar, offset, size }         → { type: 'value', value }
//                 { op: 'write', bar, offset, size, value }  → { type: 'written' }
//                 { op: 'stop' }                             → exits 0
// Child → parent: { type: 'ready', id, master, counters } | { type: 'msi', address, data, vector }
//                 | { type: 'fatal', error }
const LIFETIME_MS = 30_000;
const [bundle] = process.argv.slice(2);
if (!bundle || typeof process.send !== 'function') {
  console.error('usage: node handover-child.mjs BUNDLE (with an IPC channel)');
  process.exit(2);
}
setTimeout(() => process.exit(3), LIFETIME_MS).unref();
const { IvshmemDevice } = await import(bundle);

let device;
process.on('disconnect', () => {
  device?.close();
  process.exit(0);
});
process.on('message', async (m) => {
  try {
    if (m.op === 'adopt') {
      const fds = Array.from({ length: m.fdCount }, (_, i) => 4 + i);
      const transport = {
        setIrqLevel() {},
        sendMsi: (address, data, vector) => process.send({ type: 'msi', address, data, vector }),
      };
      device = await IvshmemDevice.create({
        mode: 'doorbell',
        vectors: m.vectors,
        transport,
        handover: {
          connection: { description: m.description, fds },
          state: Uint8Array.from(m.state),
          master: m.master,
        },
      });
      process.send({ type: 'ready', id: device.id, master: device.master, counters: device.counters() });
    } else if (m.op === 'read') {
      const value = device.mmioRead(m.bar, m.offset, m.size);
      process.send({ type: 'value', value: Number(value) });
    } else if (m.op === 'write') {
      device.mmioWrite(m.bar, m.offset, m.size, m.value);
      process.send({ type: 'written' });
    } else if (m.op === 'stop') {
      device?.close();
      device = undefined;
      process.disconnect();
    }
  } catch (error) {
    process.send({ type: 'fatal', error: String(error?.stack ?? error), code: error?.code });
  }
});
process.send({ type: 'started' });
