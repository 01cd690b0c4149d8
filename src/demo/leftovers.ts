// What a demo run leaves on the machine, named after the pid of the process that owns it: the shm
// object /dev/shm/ivshmem-demo-<pid> and the folder <tmpdir>/ivshmem-demo-<pid>-XXXXXX with the
// server's socket. A run that dies by SIGKILL cannot remove them itself, so each run removes those
// of runs whose process no longer exists, and never those of a live one.
import { lstatSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const SHM_DIR = '/dev/shm';

export const shmObjectName = (pid: number): string => `ivshmem-demo-${pid}`;
export const tempFolderPrefix = (pid: number): string => `ivshmem-demo-${pid}-`;

/** Whether a process with this pid exists (EPERM: it does, someone else's). A zombie still counts:
 *  its parent has yet to notice, and may be about to clean up after it. */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function entries(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return []; // no /dev/shm (not Linux) or an unreadable tmpdir: nothing of ours can be there
  }
}

/**
 * Removes what dead demo runs left, and returns the paths removed. Only entries of this user,
 * whose owning pid is gone (or is this process, which has created nothing yet), are touched.
 */
export function removeStaleLeftovers(): string[] {
  const removed: string[] = [];
  const uid = process.getuid?.();
  const stale = (pid: number) => pid === process.pid || !processExists(pid);
  const sweep = (dir: string, pattern: RegExp, recursive: boolean) => {
    for (const name of entries(dir)) {
      const m = pattern.exec(name);
      if (!m || !stale(Number(m[1]))) continue;
      const path = join(dir, name);
      try {
        if (uid !== undefined && lstatSync(path).uid !== uid) continue;
        rmSync(path, { recursive, force: true });
        removed.push(path);
      } catch {
        // gone already (another run swept it first) or not ours to remove
      }
    }
  };
  sweep(SHM_DIR, /^ivshmem-demo-(\d+)$/, false);
  sweep(tmpdir(), /^ivshmem-demo-(\d+)-[A-Za-z0-9]{6}$/, true);
  return removed;
}
