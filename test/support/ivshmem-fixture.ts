// The TypeScript side of ivshmem-fixture-server.py: a one-client ivshmem server (Node cannot pass
// file descriptors over UNIX sockets) whose own-vector eventfds the test can signal.
import { spawnSync } from 'node:child_process';
import { existsSync, unlinkSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { LineProcess } from './line-process.js';

export const FIXTURE_SCRIPT = fileURLToPath(new URL('./ivshmem-fixture-server.py', import.meta.url));

/** Why the fixture cannot run here (python3 missing or too old), or null. */
export function fixtureUnavailableReason(python = 'python3'): string | null {
  const r = spawnSync(
    python,
    ['-c', 'import os, socket, sys; assert sys.version_info >= (3, 10); os.eventfd; os.memfd_create; socket.send_fds'],
    {
      encoding: 'utf8',
      timeout: 15_000,
    },
  );
  if (r.error !== undefined) return `${python} cannot run: ${r.error.message}`;
  if (r.status !== 0)
    return `${python} lacks os.eventfd/os.memfd_create/socket.send_fds (needs Python >= 3.10 on Linux)`;
  return null;
}

const isAnswer = (l: string) => l === 'ok' || l === 'timeout' || l.startsWith('error');

export class IvshmemFixture {
  readonly socketPath: string;
  readonly id: number;
  readonly vectors: number;
  readonly #proc: LineProcess;
  #ready: Promise<string> | null = null;

  private constructor(proc: LineProcess, socketPath: string, id: number, vectors: number) {
    this.#proc = proc;
    this.socketPath = socketPath;
    this.id = id;
    this.vectors = vectors;
  }

  /** Starts the server on `socketPath`; resolves once it listens. */
  static async start(
    socketPath: string,
    id: number,
    vectors: number,
    shmBytes = 1 << 20,
    python = 'python3',
  ): Promise<IvshmemFixture> {
    const proc = new LineProcess(python, [FIXTURE_SCRIPT, socketPath, String(id), String(vectors), String(shmBytes)], {
      name: 'ivshmem fixture server',
      timeoutMs: 5000,
    });
    const f = new IvshmemFixture(proc, socketPath, id, vectors);
    try {
      await proc.expectLine((l) => l === 'listening', 'listening', 10_000);
    } catch (error) {
      await f.close();
      throw error;
    }
    // From here the next line is 'ready' (sent once the client got every message).
    f.#ready = proc.expectLine((l) => l === 'ready', 'ready', 20_000);
    f.#ready.catch(() => {});
    return f;
  }

  /** Resolves once the client (QEMU) has been sent the whole setup. */
  async ready(): Promise<void> {
    if (this.#ready === null) throw new Error('fixture not started');
    await this.#ready;
  }

  async #ask(line: string): Promise<void> {
    const answer = await this.#proc.request(line, isAnswer);
    if (answer !== 'ok') throw new Error(`fixture ${JSON.stringify(line)} answered ${JSON.stringify(answer)}`);
  }

  /** Signals own vector `v` and waits until QEMU has consumed the event. */
  fire(v: number): Promise<void> {
    return this.#ask(`fire ${v}`);
  }

  /** Waits until no own vector is signalled (QEMU consumed what a doorbell write raised). */
  settle(): Promise<void> {
    return this.#ask('wait all');
  }

  /** Ends the server (closing stdin makes it unlink its socket and exit); idempotent. */
  async close(): Promise<void> {
    await this.#proc.close(2000, 1000);
    try {
      if (existsSync(this.socketPath)) unlinkSync(this.socketPath);
    } catch {
      // removed with its directory later
    }
  }
}
