// A child process spoken to one line at a time: each request is one stdin line, answered by the
// first stdout line that the caller's predicate accepts (other lines are dropped). Everything is
// bounded in time, and close() always ends the process (SIGTERM, then SIGKILL to its group).
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

/** Last resort when the test process exits without cleanup: kill every group still running. */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of live) killGroup(child, 'SIGKILL');
  });
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal); // the child leads its own process group (detached)
  } catch {
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
  }
}

export interface LineProcessOptions {
  /** A name for error messages. */
  name: string;
  /** Default time limit of one request, in ms. */
  timeoutMs?: number;
}

interface Waiter {
  accept: (line: string) => boolean;
  resolve: (line: string) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

export class LineProcess {
  readonly name: string;
  readonly timeoutMs: number;
  readonly #child: ChildProcess;
  #buffer = '';
  #waiter: Waiter | null = null;
  #exited: Promise<void>;
  #exitError: Error | null = null;
  #closing: Promise<void> | null = null;
  /** The last lines seen on stdout, for error messages. */
  readonly recent: string[] = [];

  constructor(command: string, args: readonly string[], options: LineProcessOptions) {
    this.name = options.name;
    this.timeoutMs = options.timeoutMs ?? 5000;
    installExitHook();
    this.#child = spawn(command, [...args], { stdio: ['pipe', 'pipe', 'ignore'], detached: true });
    live.add(this.#child);
    this.#exited = new Promise((resolve) => {
      this.#child.once('exit', (code, signal) => {
        live.delete(this.#child);
        this.#exitError = new Error(
          `${this.name} exited (code ${code}, signal ${signal}); last output: ${this.recent.join(' | ')}`,
        );
        this.#fail(this.#exitError);
        resolve();
      });
      this.#child.once('error', (error) => {
        live.delete(this.#child);
        this.#exitError = new Error(`${this.name} could not run: ${error.message}`);
        this.#fail(this.#exitError);
        resolve();
      });
    });
    this.#child.stdin!.on('error', () => {}); // EPIPE after the process died: reported by 'exit'
    this.#child.stdout!.setEncoding('utf8');
    this.#child.stdout!.on('data', (chunk: string) => this.#onData(chunk));
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }

  get running(): boolean {
    return this.#exitError === null;
  }

  #onData(chunk: string): void {
    this.#buffer += chunk;
    let nl: number;
    while ((nl = this.#buffer.indexOf('\n')) >= 0) {
      const line = this.#buffer.slice(0, nl).replace(/\r$/, '');
      this.#buffer = this.#buffer.slice(nl + 1);
      this.recent.push(line.length > 200 ? `${line.slice(0, 200)}...` : line);
      if (this.recent.length > 8) this.recent.shift();
      const w = this.#waiter;
      if (w !== null && w.accept(line)) {
        this.#waiter = null;
        clearTimeout(w.timer);
        w.resolve(line);
      }
    }
  }

  #fail(error: Error): void {
    const w = this.#waiter;
    if (w === null) return;
    this.#waiter = null;
    clearTimeout(w.timer);
    w.reject(error);
  }

  /** Waits for the next stdout line accepted by `accept` (without sending anything). */
  expectLine(accept: (line: string) => boolean, what: string, timeoutMs = this.timeoutMs): Promise<string> {
    if (this.#exitError !== null) return Promise.reject(this.#exitError);
    if (this.#waiter !== null) return Promise.reject(new Error(`${this.name}: overlapping requests (${what})`));
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiter = null;
        reject(
          new Error(
            `${this.name}: no answer to ${JSON.stringify(what)} within ${timeoutMs} ms; last output: ${this.recent.join(' | ')}`,
          ),
        );
        void this.close(); // a stuck child is useless: end it so nothing hangs later
      }, timeoutMs);
      this.#waiter = { accept, resolve, reject, timer };
    });
  }

  /** Sends one line and waits for its answer. */
  request(line: string, accept: (line: string) => boolean, timeoutMs = this.timeoutMs): Promise<string> {
    const answer = this.expectLine(accept, line, timeoutMs);
    if (this.#exitError === null) this.#child.stdin!.write(`${line}\n`);
    return answer;
  }

  /**
   * Ends the process: stdin closed (given `stdinGraceMs` to exit by itself), then SIGTERM, then
   * SIGKILL after `graceMs`. Idempotent; never rejects.
   */
  close(graceMs = 1000, stdinGraceMs = 200): Promise<void> {
    this.#closing ??= (async () => {
      this.#fail(new Error(`${this.name} closed`));
      if (this.#exitError !== null) return;
      this.#child.stdin!.end();
      const exited = (ms: number) =>
        Promise.race([
          this.#exited.then(() => true),
          new Promise<boolean>((r) => setTimeout(() => r(false), ms).unref()),
        ]);
      if (stdinGraceMs > 0 && (await exited(stdinGraceMs))) return;
      killGroup(this.#child, 'SIGTERM');
      if (await exited(graceMs)) return;
      killGroup(this.#child, 'SIGKILL');
      await exited(2000);
    })();
    return this.#closing;
  }
}
