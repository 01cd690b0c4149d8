// A minimal QMP client over a UNIX socket (QEMU started with -qmp unix:PATH,server=on,wait=off):
// enough to ask for a system reset and wait for its RESET event. Bounded in time.
import { connect } from 'node:net';
import type { Socket } from 'node:net';

type Message = Record<string, unknown>;

export class Qmp {
  readonly #socket: Socket;
  #buffer = '';
  readonly #messages: Message[] = [];
  #wake: (() => void) | null = null;
  #closed = false;

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      this.#buffer += chunk;
      let nl: number;
      while ((nl = this.#buffer.indexOf('\n')) >= 0) {
        const line = this.#buffer.slice(0, nl).trim();
        this.#buffer = this.#buffer.slice(nl + 1);
        if (line === '') continue;
        try {
          this.#messages.push(JSON.parse(line) as Message);
        } catch {
          // not JSON: ignore
        }
      }
      this.#wake?.();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      this.#closed = true;
      this.#wake?.();
    });
  }

  /** Connects, reads the greeting and leaves capabilities negotiation mode. */
  static async connect(path: string, timeoutMs = 5000): Promise<Qmp> {
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = connect(path);
      const timer = setTimeout(() => {
        s.destroy();
        reject(new Error(`QMP: cannot connect to ${path} within ${timeoutMs} ms`));
      }, timeoutMs);
      s.once('connect', () => {
        clearTimeout(timer);
        resolve(s);
      });
      s.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
    const qmp = new Qmp(socket);
    try {
      await qmp.#next((m) => 'QMP' in m, 'greeting', timeoutMs);
      await qmp.execute('qmp_capabilities', timeoutMs);
    } catch (error) {
      qmp.close();
      throw error;
    }
    return qmp;
  }

  async #next(accept: (m: Message) => boolean, what: string, timeoutMs: number): Promise<Message> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.#messages.findIndex(accept);
      if (i >= 0) return this.#messages.splice(i, 1)[0];
      if (this.#closed) throw new Error(`QMP closed while waiting for ${what}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`QMP: no ${what} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = null;
    }
  }

  /** Runs a command; resolves with its "return" value, rejects on "error". */
  async execute(command: string, timeoutMs = 5000): Promise<unknown> {
    this.#socket.write(`${JSON.stringify({ execute: command })}\n`);
    const reply = await this.#next((m) => 'return' in m || 'error' in m, `reply to ${command}`, timeoutMs);
    if ('error' in reply) throw new Error(`QMP ${command} failed: ${JSON.stringify(reply.error)}`);
    return reply.return;
  }

  /** system_reset, then waits for the RESET event (the reset has been carried out). */
  async systemReset(timeoutMs = 5000): Promise<void> {
    this.#messages.splice(0, this.#messages.length, ...this.#messages.filter((m) => m.event !== 'RESET'));
    await this.execute('system_reset', timeoutMs);
    await this.#next((m) => m.event === 'RESET', 'RESET event', timeoutMs);
  }

  close(): void {
    this.#socket.destroy();
  }
}
