// The server's pid file, as QEMU's server keeps one: claimed (created, empty) before the server
// makes anything, so a path it cannot write fails the start while nothing else exists yet;
// filled in once the server serves; removed when it stops, unless another process has written
// its own pid there since (a successor that took the server over).
import { closeSync, openSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';

export class PidFile {
  readonly path: string;
  #pid = 0;

  private constructor(path: string) {
    this.path = path;
  }

  /** Creates (or empties) the file; throws a message a person understands if it cannot. */
  static claim(path: string): PidFile {
    try {
      closeSync(openSync(path, 'w', 0o644));
    } catch (e) {
      throw new Error(`cannot write pid file ${path}: ${(e as Error).message}`, { cause: e });
    }
    return new PidFile(path);
  }

  write(pid: number): void {
    writeFileSync(this.path, `${pid}\n`);
    this.#pid = pid;
  }

  /** Removes the file if it still says what this server wrote (or is still empty). Idempotent. */
  remove(): void {
    try {
      const text = readFileSync(this.path, 'utf8').trim();
      if (text === '' || text === String(this.#pid)) unlinkSync(this.path);
    } catch {
      // gone already
    }
  }
}
