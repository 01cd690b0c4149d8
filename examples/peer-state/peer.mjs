// One peer of the peer-state example, in a process of its own: a device that joins the server
// with the state table, publishes the state given on the command line through its State register
// (as its guest would), says "ready <id>" and then idles. run.mjs kills one of these with SIGKILL:
// no goodbye, only the EOF the kernel gives the server when the process dies.
// argv: <socket path> <state>
import { IvshmemDevice } from 'ivshmem-ts';

const [socketPath, state] = process.argv.slice(2);
const STATE = 0x10; // BAR0: State, the register a guest publishes through

const device = await IvshmemDevice.create({
  mode: 'intx',
  vectors: 1,
  server: socketPath,
  stateTable: { vector: 0 },
  transport: { setIrqLevel() {}, sendMsi() {} },
});
device.mmioWrite(0, STATE, 4, Number(state));
process.stdout.write(`ready ${device.id}\n`);
process.once('SIGTERM', () => {
  device.close(); // a clean leave: the server marks the entry gone all the same
  process.exit(0);
});
setInterval(() => {}, 1 << 30);
