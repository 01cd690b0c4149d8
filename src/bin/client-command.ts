// `ivshmem-client`: QEMU contrib's debugging client. Reads commands from stdin (dump, int <peer>
// <vector>, int <peer> all, int all, help), prints interrupts and joins/leaves, and reconnects
// every second while the server is away. A server it refuses (more vectors than -n, a protocol it
// does not speak) ends it with exit status 1: asking again would only cost the other peers a join
// and a leave each second.
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { CLIENT_MAX_VECTORS, IvshmemClient, isRetryableConnectError } from '../client/ivshmem-client.js';
import { MAX_VECTORS } from '../core/abi.js';
import { DEFAULT_SOCKET_PATH } from '../protocol/messages.js';

const USAGE = `Usage: ivshmem-client [OPTION]...
  -h, --help               show this help and exit
  -v, --verbose            print more
  -S, --socket-path PATH   the server's socket (default ${DEFAULT_SOCKET_PATH})
  -n, --vectors N          accept peers with up to N vectors, 1..${MAX_VECTORS} (default ${CLIENT_MAX_VECTORS}, as QEMU's client)
`;

const COMMANDS = `dump: dump peers (including us)
int <peer> <vector>: notify one vector on a peer
int <peer> all: notify all vectors of a peer
int all: notify all vectors of all peers (excepting us)
`;

export async function clientCommand(
  argv: string[],
  input = process.stdin,
  out = process.stdout,
  err = process.stderr,
): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      options: {
        help: { type: 'boolean', short: 'h' },
        verbose: { type: 'boolean', short: 'v' },
        'socket-path': { type: 'string', short: 'S' },
        vectors: { type: 'string', short: 'n' },
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
  const path = values['socket-path'] ?? DEFAULT_SOCKET_PATH;
  const verbose = values.verbose === true;
  const vectorsText = values.vectors ?? String(CLIENT_MAX_VECTORS);
  const vectors = Number(vectorsText);
  if (!/^\d+$/.test(vectorsText) || vectors < 1 || vectors > MAX_VECTORS) {
    err.write(
      `ivshmem-client: -n takes a number of vectors 1..${MAX_VECTORS}, not ${JSON.stringify(values.vectors)}\n${USAGE}`,
    );
    return 1;
  }
  let client: IvshmemClient | undefined;
  let stopped = false;
  let retry: NodeJS.Timeout | undefined;
  let refusal: string | undefined;
  let lines: ReturnType<typeof createInterface> | undefined;

  // The prompt waits for a command on its line; output that arrives meanwhile goes on a line of
  // its own, and the prompt follows it again.
  let promptShown = false;
  const prompt = (): void => {
    out.write('cmd> ');
    promptShown = true;
  };
  const say = (text: string): void => {
    out.write(promptShown ? `\n${text}` : text);
    if (promptShown) prompt();
  };
  const refuse = (message: string): void => {
    refusal = message;
    stopped = true;
    lines?.close();
  };

  const connect = async (): Promise<void> => {
    if (stopped) return;
    try {
      const c = await IvshmemClient.connect(path, { vectors });
      if (stopped) {
        c.close();
        return;
      }
      client = c;
      say(`listen on server socket ${c.connection.path}, our_id = ${c.id}\n`);
      c.on('interrupt', (vector) => say(`receive notification from peer_id=${c.id} vector=${vector}\n`));
      c.on('join', (peer) => say(`peer ${peer} joined\n`));
      c.on('leave', (peer) => say(`peer ${peer} left\n`));
      c.on('protocol-error', (e) => verbose && err.write(`${e.message}\n`));
      c.on('close', () => {
        if (stopped) return;
        c.close();
        client = undefined;
        const refused = c.connection.refusal;
        if (refused !== undefined) refuse(refusalText(refused));
        else {
          say('disconnected from server\n');
          retry = setTimeout(connect, 1000);
        }
      });
    } catch (e) {
      if (stopped) return;
      if (!isRetryableConnectError(e)) {
        refuse(refusalText(e as Error & { code?: string }));
        return;
      }
      if (verbose) err.write(`${(e as Error).message}\n`);
      say('cannot connect to server, retry in 1 second\n');
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
  prompt();
  void connect();
  lines = createInterface({ input, terminal: false });
  for await (const line of lines) {
    promptShown = false; // the user's Enter ended the prompt's line
    for (const command of line.split(/[\r;]/)) run(command);
    prompt();
  }
  stopped = true;
  if (retry) clearTimeout(retry);
  client?.close();
  if (refusal !== undefined) {
    if (promptShown) out.write('\n');
    err.write(`ivshmem-client: cannot use the server at ${path}: ${refusal}\n`);
    return 1;
  }
  return 0;
}

function refusalText(e: Error & { code?: string }): string {
  const hint = e.code === 'ERR_IVSHMEM_TOO_MANY_VECTORS' ? "; give -n as large as the server's -n" : '';
  return `${e.message}${hint}${e.code ? ` (${e.code})` : ''}`;
}
