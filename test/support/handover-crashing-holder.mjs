// An ivshmem server (the built package) that offers a hand-over and dies by SIGKILL right after it
// has sent its state — before it can read the successor's ADOPTED and confirm: an old server
// crashing in the middle of a hand-over. argv: socket path, control path, shm name.
import { HandoverOffer, IvshmemServer } from '../../dist/index.js';

const [socketPath, controlPath, shm] = process.argv.slice(2);
const server = IvshmemServer.start({ socketPath, memory: { shm }, size: 1 << 20, vectors: 2 });
HandoverOffer.listen(server, controlPath);
const suspend = server.handoverSuspend.bind(server);
server.handoverSuspend = () => {
  // The state is written in the same turn of the event loop; ADOPTED can only be read in a later
  // one, after the timers: so this dies with everything sent and nothing confirmed.
  setTimeout(() => process.kill(process.pid, 'SIGKILL'), 0);
  return suspend();
};
process.stdout.write('ready\n');
