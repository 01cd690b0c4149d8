// `ivshmem-server`: QEMU contrib's server, flag for flag (-S -M -m -l -n -F -p -v -h and long
// forms). Without -F it detaches into the background, as QEMU's does, and writes the pid file.
// Beyond QEMU's: its statistics as one JSON line on stdout on SIGUSR2 and, with --stats-interval,
// every so many seconds; a restart no client notices: --handover-socket on the running server,
// --takeover on its successor (src/server/handover.ts).
import { daemonize, readinessChannel } from './daemon.js';
import { PidFile } from './pid-file.js';
import { parseArgs } from 'node:util';
import { HandoverOffer, takeOver } from '../server/handover.js';
import { IvshmemServer, MAX_SERVER_VECTORS } from '../server/ivshmem-server.js';
import { ServerMemory } from '../os/server-memory.js';
import { DEFAULT_SOCKET_PATH } from '../protocol/messages.js';
import { parseSize } from './size.js';

const DEFAULT_PIDFILE = '/var/run/ivshmem-server.pid';
// Each ends the server the same way: peers told, socket, shm name and pid file removed.
const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'] as const;

const USAGE = `Usage: ivshmem-server [OPTION]...
  -h, --help               show this help and exit
  -v, --verbose            print what happens (needs -F)
  -F, --foreground         stay in the foreground (default: run in the background)
  -p, --pidfile FILE       write the server's pid to FILE (default in the background: ${DEFAULT_PIDFILE})
  -S, --socket-path PATH   listening socket (default ${DEFAULT_SOCKET_PATH})
  -M, --shm NAME           POSIX shared memory object name (default ivshmem)
  -m, --memory-dir DIR     use an unlinked file in DIR instead, e.g. a hugetlbfs mount
  -l, --size SIZE          shared memory size, K/M/G suffixes allowed (default 4M; rounded up to a power of two)
  -n, --vectors N          vectors per peer (default 1; QEMU allows 64, this server ${MAX_SERVER_VECTORS})
      --state-table SLOTS  keep a peer state table of SLOTS entries (1..65536) in the memory's
                           last pages: peers that opt in publish a state and see who is gone
                           (docs/peer-state-table.md); QEMU peers are unaffected
      --stats-interval SECS print statistics (one JSON line on stdout) every SECS seconds;
                           they are also printed on SIGUSR2
      --handover-socket PATH
                           accept a successor on the UNIX socket PATH: a server started later
                           with --takeover PATH receives the listening socket, the memory, every
                           client's connection and eventfds, and this one exits without removing
                           the socket or the shm object; connected peers see no leave, join or
                           new id (a restart or an upgrade without downtime)
      --takeover PATH      take over from the server whose --handover-socket is PATH: socket,
                           memory, size and vectors are that server's (-S -M -m -l -n are not
                           used), and this one then offers the same PATH to its own successor.
                           If the takeover fails, the old server serves on and this one exits 1
`;

export async function serverCommand(argv: string[], out = process.stdout, err = process.stderr): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      tokens: true,
      strict: true,
      options: {
        help: { type: 'boolean', short: 'h' },
        verbose: { type: 'boolean', short: 'v' },
        foreground: { type: 'boolean', short: 'F' },
        pidfile: { type: 'string', short: 'p' },
        'socket-path': { type: 'string', short: 'S' },
        shm: { type: 'string', short: 'M' },
        'memory-dir': { type: 'string', short: 'm' },
        size: { type: 'string', short: 'l' },
        vectors: { type: 'string', short: 'n' },
        'stats-interval': { type: 'string' },
        'state-table': { type: 'string' },
        'handover-socket': { type: 'string' },
        takeover: { type: 'string' },
      },
    });
  } catch (e) {
    err.write(`ivshmem-server: ${(e as Error).message}\n${USAGE}`);
    return 1;
  }
  const v = parsed.values;
  if (v.help) {
    out.write(USAGE);
    return 0;
  }
  if (v.verbose && !v.foreground) {
    err.write('ivshmem-server: cannot use verbose in daemon mode (add -F)\n');
    return 1;
  }
  // -M and -m override each other: the last one given wins.
  let memory: { shm: string } | { hugetlbfs: string } = { shm: 'ivshmem' };
  for (const t of parsed.tokens ?? []) {
    if (t.kind !== 'option' || t.value === undefined) continue;
    if (t.name === 'shm') memory = { shm: t.value };
    if (t.name === 'memory-dir') memory = { hugetlbfs: t.value };
  }
  let size: number;
  try {
    size = parseSize(v.size ?? '4M');
  } catch (e) {
    err.write(`ivshmem-server: ${(e as Error).message}\nTry 'ivshmem-server -h' for more information.\n`);
    return 1;
  }
  const vectors = Number(v.vectors ?? '1');
  if (!Number.isInteger(vectors) || vectors < 1 || vectors > MAX_SERVER_VECTORS) {
    err.write(`ivshmem-server: cannot parse n_vectors (1..${MAX_SERVER_VECTORS})\n`);
    return 1;
  }
  const stateSlots = v['state-table'] === undefined ? undefined : Number(v['state-table']);
  if (stateSlots !== undefined && !(Number.isInteger(stateSlots) && stateSlots >= 1 && stateSlots <= 65536)) {
    err.write(
      `ivshmem-server: --state-table takes a number of slots, 1..65536\nTry 'ivshmem-server -h' for more information.\n`,
    );
    return 1;
  }
  const socketPath = v['socket-path'] ?? DEFAULT_SOCKET_PATH;
  const statsInterval = v['stats-interval'] === undefined ? undefined : Number(v['stats-interval']);
  if (
    statsInterval !== undefined &&
    !(Number.isFinite(statsInterval) && statsInterval > 0 && statsInterval <= 2 ** 31 / 1000)
  ) {
    err.write(
      `ivshmem-server: --stats-interval takes a positive number of seconds\nTry 'ivshmem-server -h' for more information.\n`,
    );
    return 1;
  }

  if (v.takeover === undefined) {
    try {
      ServerMemory.sizeFor(size);
    } catch (e) {
      err.write(`ivshmem-server: ${(e as Error).message}\nTry 'ivshmem-server -h' for more information.\n`);
      return 1;
    }
  }

  if (!v.foreground) return await daemonize(argv, v.pidfile ?? DEFAULT_PIDFILE, err);

  // The pid file is claimed before anything else is made, so an unwritable one costs nothing;
  // it is removed again on a failed start and when the server stops.
  const ready = readinessChannel();
  // A stop signal that arrives while the server is still starting is kept, and acted on as soon
  // as there is a server to stop: the default action would kill us with the socket and the
  // memory left behind.
  let stopSignal: NodeJS.Signals | undefined;
  const early = (signal: NodeJS.Signals) => (stopSignal ??= signal);
  for (const signal of STOP_SIGNALS) process.on(signal, early);
  const unhookEarly = () => {
    for (const signal of STOP_SIGNALS) process.off(signal, early);
  };
  const log = v.verbose ? (line: string) => out.write(`${line}\n`) : undefined;
  // Node opens its inspector on SIGUSR1: a debugger attached to a server that holds every peer's
  // fds and memory is not something a stray signal should grant. A listener of ours replaces it.
  const noInspector = () => log?.('SIGUSR1 ignored: the inspector is disabled in the server');
  process.on('SIGUSR1', noInspector);
  let pidfile: PidFile | undefined;
  try {
    if (v.pidfile !== undefined) pidfile = PidFile.claim(v.pidfile);
  } catch (e) {
    err.write(`ivshmem-server: ${(e as Error).message}\n`);
    ready?.fail((e as Error).message);
    process.off('SIGUSR1', noInspector);
    unhookEarly();
    return 1;
  }
  let server: IvshmemServer;
  let offer: HandoverOffer | undefined;
  try {
    if (v.takeover !== undefined) {
      ({ server, offer } = await takeOver(v.takeover, { log }));
      out.write(`took over ${server.socketPath} with peers [${server.peerIds.join(', ')}]\n`);
    } else {
      const stateTable = stateSlots === undefined ? undefined : { slots: stateSlots };
      server = IvshmemServer.start({ socketPath, memory, size, vectors, log, stateTable });
      if (v['handover-socket'] !== undefined) {
        try {
          offer = HandoverOffer.listen(server, v['handover-socket'], { log });
        } catch (e) {
          server.close();
          throw e;
        }
      }
    }
  } catch (e) {
    const x = e as NodeJS.ErrnoException;
    const message = `cannot ${v.takeover !== undefined ? 'take over' : 'start'}: ${x.message}${x.code ? ` (${x.code})` : ''}`;
    err.write(`ivshmem-server: ${message}\n`);
    pidfile?.restore();
    ready?.fail(message);
    process.off('SIGUSR1', noInspector);
    unhookEarly();
    return 1;
  }
  ready?.ok();
  server.on('refused', (reason) => err.write(`ivshmem-server: refused a connection: ${reason}\n`));
  const printStats = () =>
    out.write(`${JSON.stringify({ stats: 'ivshmem-server', time: new Date().toISOString(), ...server.stats() })}\n`);
  process.on('SIGUSR2', printStats);
  const timer = statsInterval === undefined ? undefined : setInterval(printStats, statsInterval * 1000);
  return await new Promise<number>((resolve) => {
    let handedOver = false;
    const stop = () => {
      process.off('SIGUSR2', printStats);
      process.off('SIGUSR1', noInspector);
      for (const signal of STOP_SIGNALS) process.off(signal, stop);
      if (timer !== undefined) clearInterval(timer);
      if (handedOver) {
        // Everything (the pid file too) is the successor's now.
        out.write('handed over to a successor, exiting\n');
        resolve(0);
        return;
      }
      offer?.close();
      server.close();
      pidfile?.remove();
      resolve(0);
    };
    for (const signal of STOP_SIGNALS) process.once(signal, stop);
    unhookEarly();
    if (stopSignal !== undefined) stop();
    offer?.on('handover-failed', (reason) => err.write(`ivshmem-server: a takeover failed (${reason}); serving on\n`));
    offer?.on('handed-over', () => {
      handedOver = true;
      stop();
    });
  });
}
