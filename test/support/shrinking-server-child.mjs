// Child side of the shrinking-memory test: `node shrinking-server-child.mjs BUNDLE DIR SEALABLE`.
// One process holds a fake ivshmem server and a device joined to it. The server sends a 64 KiB
// memfd (sealable or not), the device maps it, the server truncates it to 4 KiB, and the device
// then reads and writes BAR2 past the new end. Prints one JSON line and exits 0 when it survives;
// if the access faults, the process dies of SIGBUS, which is what the parent looks for.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [bundle, dir, sealable] = process.argv.slice(2);
const { IvshmemDevice, UnixListener, native } = await import(pathToFileURL(bundle).href);

const listener = UnixListener.listen(join(dir, 'shrink.sock'));
const pending = IvshmemDevice.create({
  mode: 'doorbell',
  vectors: 1,
  server: listener.path,
  setupTimeoutMs: 5000,
  core: 'ts',
  transport: { setIrqLevel() {}, sendMsi() {} },
});
let conn = null;
for (let i = 0; i < 1000 && conn === null; i++) {
  conn = listener.accept();
  if (conn === null) await new Promise((r) => setTimeout(r, 5));
}
if (conn === null) throw new Error('the device never connected');
const memfd = native().memfdCreate('ivshmem-shrink', sealable === 'sealable');
native().ftruncate(memfd, 65536);
conn.send(0);
conn.send(0);
conn.send(-1, memfd);
const device = await pending;
device.mmioWrite(2, 60000, 4, 0x12345678);
let truncate = 'ok';
try {
  native().ftruncate(memfd, 4096);
} catch (err) {
  truncate = err.code;
}
const read = device.mmioRead(2, 60000, 4);
device.mmioWrite(2, 65532, 4, 1);
process.stdout.write(`${JSON.stringify({ truncate, read, size: device.sharedMemory.size })}\n`);
device.close();
conn.close();
native().close(memfd);
listener.close();
