// `ivshmem-client`: QEMU contrib's debugging client. Reads commands from stdin (dump, int <peer>
// <vector>, int <peer> all, int all, help), prints interrupts and joins/leaves, and reconnects
// every second while the server is away.
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { IvshmemClient } from '../client/ivshmem-client.js';
import { DEFAULT_SOCKET } from './server-command.js';

const USAGE = `Usage: ivshmem-client [OPTION]...
  -h, --help               show this help and exit
  -v, --verbose            print more
  -S, --socket-path PATH   the server's socket (default ${DEFAULT_SOCKET})
`;

const COMMANDS = `dump: dump peers (including us)
int <peer> <vector>: notify one vector on a peer
int <peer> all: notify all vectors of a peer
int all: notify all vectors of all peers (excepting us)
`;

export async function clientCommand(argv: string[], input = process.stdin, out = process.stdout, err = process.stderr): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      options: {
        help: { type: 'boolean', short: 'h' },
        verbose: { type: 'boolean', short: 'v' },
        'socket-path': { type: 'string', short: 'S' },
      },
    }));
  } catch (e) {
    err.write(`ivshmem-client: ${(e as Error).message}\n${USAGE}`);
    return 1;
  }
  if (values.help) {
    out.write(USAGE);
    return 0;
  }
  const path = values['socket-path'] ?? DEFAULT_SOCKET;
  const verbose = values.verbose === true;
  let client: IvshmemClient | undefined;
  let stopped = false;
  let retry: NodeJS.Timeout | undefined;

  const connect = async (): Promise<void> => {
    if (stopped) return;
    try {
      const c = await IvshmemClient.connect(path);
      if (stopped) {
        c.close();
        return;
      }
      client = c;
      out.write(`listen on server socket ${c.connection.path}, our_id = ${c.id}\n`);
      c.on('interrupt', (vector) => out.write(`receive notification from peer_id=${c.id} vector=${vector}\n`));
      c.on('join', (peer) => out.write(`peer ${peer} joined\n`));
      c.on('leave', (peer) => out.write(`peer ${peer} left\n`));
      c.on('protocol-error', (e) => verbose && err.write(`${e.message}\n`));
      c.on('close', () => {
        if (stopped) return;
        out.write('disconnected from server\n');
        c.close();
        client = undefined;
        retry = setTimeout(connect, 1000);
      });
    } catch (e) {
      if (verbose) err.write(`${(e as Error).message}\n`);
      out.write('cannot connect to server, retry in 1 second\n');
      retry = setTimeout(connect, 1000);
    }
  };

  const run = (command: string): void => {
    const words = command.trim().split(/\s+/).filter(Boolean);
    if (words.length === 0) return;
    if (words[0] === 'help' || words[0] === '?') {
      if (words[0] === '?') out.write('invalid command, type help\n');
      out.write(COMMANDS);
      return;
    }
    if (client === undefined) {
      out.write('not connected to the server\n');
      return;
    }
    try {
      if (words[0] === 'dump' && words.length === 1) out.write(`${client.dump()}\n`);
      else if (words[0] === 'int' && words.length === 2 && words[1] === 'all') client.ringEveryone();
      else if (words[0] === 'int' && words.length === 3 && /^\d+$/.test(words[1])) {
        const peer = Number(words[1]);
        if (words[2] === 'all') client.ringAll(peer);
        else if (/^\d+$/.test(words[2])) client.ring(peer, Number(words[2]));
        else out.write('invalid command, type help\n');
      } else out.write('invalid command, type help\n');
    } catch (e) {
      const message = (e as Error).message;
      // QEMU's client says only this for an unknown peer; a bad vector fails silently unless verbose.
      if (message.startsWith('cannot find')) out.write(`${message}\n`);
      else if (verbose) err.write(`${message}\n`);
    }
  };

  out.write(COMMANDS);
  out.write('cmd> ');
  void connect();
  const lines = createInterface({ input, terminal: false });
  for await (const line of lines) {
    for (const command of line.split(/[\r;]/)) run(command);
    out.write('cmd> ');
  }
  stopped = true;
  if (retry) clearTimeout(retry);
  client?.close();
  return 0;
}
