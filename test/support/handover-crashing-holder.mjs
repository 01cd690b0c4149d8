// An ivshmem server (the built package) that offers a hand-over and dies by SIGKILL at a chosen
// point after it has sent its state: an old server crashing in the middle of a hand-over.
// argv: socket path, control path, shm name, and when to die:
//   timer (default)  in a timer after the state is sent: before it can read ADOPTED and confirm
//   microtask        as soon as the turn that sent the state ends
//   immediate        after the poll phase that follows it
//   delay:<ms>       that long after the state is sent (fractions allowed)
//   commit           right after it has written COMMIT, before it lets go of anything
import { HandoverOffer, IvshmemServer } from '../../dist/index.js';

const [socketPath, controlPath, shm, when = 'timer'] = process.argv.slice(2);
const server = IvshmemServer.start({ socketPath, memory: { shm }, size: 1 << 20, vectors: 2 });
HandoverOffer.listen(server, controlPath);
const die = () => process.kill(process.pid, 'SIGKILL');
if (when === 'commit') {
  server.handoverRelease = die;
} else {
  const suspend = server.handoverSuspend.bind(server);
  server.handoverSuspend = () => {
    // The state is written in the same turn as this call; ADOPTED can only be read in a later one.
    if (when === 'microtask') queueMicrotask(die);
    else if (when === 'immediate') setImmediate(die);
    else if (when.startsWith('delay:')) {
      const until = performance.now() + Number(when.slice(6));
      const spin = () => (performance.now() >= until ? die() : setImmediate(spin));
      setImmediate(spin);
    } else setTimeout(die, 0);
    return suspend();
  };
}
process.stdout.write('ready\n');
