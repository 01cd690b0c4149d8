// A peer in a process of its own for the state table tests: a device (the bundle's IvshmemDevice)
// joins the server with a state table, its "guest" publishes the state given on the command line
// through the State register, prints "ready <id>", and then idles until it is killed (SIGKILL in
// the test: no goodbye, only the EOF the kernel gives the server).
// argv: <bundle> <socket path> <state>
const [bundle, socketPath, state] = process.argv.slice(2);
const { IvshmemDevice } = await import(bundle);
const device = await IvshmemDevice.create({
  mode: 'doorbell',
  vectors: 2,
  server: socketPath,
  stateTable: { vector: 1 },
  transport: { setIrqLevel() {}, sendMsi() {} },
});
device.mmioWrite(0, 0x10, 4, Number(state));
process.stdout.write(`ready ${device.id}\n`);
setInterval(() => {}, 1 << 30);
