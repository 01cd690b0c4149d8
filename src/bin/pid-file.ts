// The server's pid file, as QEMU's server keeps one: written with our pid before the server makes
// anything, so a path it cannot write fails the start while nothing else exists yet, and whoever
// reads the file once the server says it listens finds the pid there. A failed start puts back
// what the file said before (a server we were to take over keeps its pid file); a stop removes it,
// unless another process has written its own pid there since (a successor that took over).
import { readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { IvshmemError } from '../errors.js';

export class PidFile {
  readonly path: string;
  readonly #pid: number;
  /** What the file said before we claimed it; undefined if it did not exist. */
  readonly #before: string | undefined;

  private constructor(path: string, pid: number, before: string | undefined) {
    this.path = path;
    this.#pid = pid;
    this.#before = before;
  }

  /** Writes `pid` into the file; throws a message a person understands if it cannot. */
  static claim(path: string, pid = process.pid): PidFile {
    let before: string | undefined;
    try {
      before = readFileSync(path, 'utf8');
    } catch {
      before = undefined; // missing (or unreadable: then the write below says why)
    }
    try {
      writeFileSync(path, `${pid}\n`, { mode: 0o644 });
    } catch (e) {
      throw new IvshmemError('ERR_IVSHMEM_PID_FILE', `cannot write pid file ${path}: ${(e as Error).message}`, {
        cause: e,
      });
    }
    return new PidFile(path, pid, before);
  }

  #ours(): boolean {
    try {
      return readFileSync(this.path, 'utf8').trim() === String(this.#pid);
    } catch {
      return false; // gone already
    }
  }

  /** After a failed start: the file as it was before the claim. */
  restore(): void {
    if (!this.#ours()) return;
    try {
      if (this.#before === undefined) unlinkSync(this.path);
      else writeFileSync(this.path, this.#before);
    } catch {
      // removed meanwhile
    }
  }

  /** After a stop: removes the file if it still says our pid. Idempotent. */
  remove(): void {
    if (!this.#ours()) return;
    try {
      unlinkSync(this.path);
    } catch {
      // removed meanwhile
    }
  }
}
