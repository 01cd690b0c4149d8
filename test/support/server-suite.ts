// The frame of a suite whose tests put peers on in-process ivshmem servers: a temporary directory
// for the sockets, a newest-first cleanup list run after each test, and at the end the proof that
// nothing was left behind (no socket in the directory, no shm object with the suite's prefix, no
// cleanup that failed). Call it inside the describe block.
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import { IvshmemServer } from '../../src/server/ivshmem-server.js';
import type { IvshmemServerOptions } from '../../src/server/ivshmem-server.js';
import { runNewestFirst } from './cleanups.js';

export interface ServerSuiteOptions {
  /** Names the temp dir and the shm objects. */
  name: string;
  size: number;
  vectors: number;
  /** How long one test's cleanups may take. */
  cleanupMs?: number;
  /** Awaited before the leftovers are counted (e.g. watchers that release fds on the next turn). */
  settle?: () => unknown;
}

export interface ServerSuite {
  /** Undone newest first after each test, failures reported at the end of the suite. */
  readonly cleanups: Array<() => unknown>;
  /** The suite's shm object prefix (for checks of its own). */
  readonly shmPrefix: string;
  /** A server on a fresh socket and shm object, closed after the test; `extra` adds options. */
  startServer(extra?: Partial<IvshmemServerOptions>): IvshmemServer;
}

export function serverSuite(options: ServerSuiteOptions): ServerSuite {
  const shmPrefix = `ivshmem-test-${options.name}-${process.pid}-`;
  const cleanups: Array<() => unknown> = [];
  const failures: string[] = [];
  let dir = '';
  let n = 0;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), `ivshmem-${options.name}-`));
  });
  afterEach(() => runNewestFirst(cleanups, failures), options.cleanupMs ?? 20_000);
  afterAll(async () => {
    await options.settle?.();
    if (dir !== '') {
      expect(readdirSync(dir), 'sockets left in the temp dir').toEqual([]);
      rmSync(dir, { recursive: true, force: true });
    }
    expect(
      readdirSync('/dev/shm').filter((f) => f.startsWith(shmPrefix)),
      'shm objects left',
    ).toEqual([]);
    expect(failures, 'cleanup errors').toEqual([]);
  });

  return {
    cleanups,
    shmPrefix,
    startServer(extra = {}) {
      const server = IvshmemServer.start({
        socketPath: join(dir, `server-${n}.sock`),
        memory: { shm: `${shmPrefix}${n++}` },
        size: options.size,
        vectors: options.vectors,
        ...extra,
      });
      cleanups.push(() => server.close());
      return server;
    },
  };
}
