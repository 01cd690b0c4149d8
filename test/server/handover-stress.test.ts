// The commit phase of a server hand-over against an old server that dies at random points after
// it has sent its state (tiny delays, the next turn, right after COMMIT). A dying process closes
// its sockets before it is seen gone, so the successor, holding everything, must tell "dying"
// from "serving on" every time: it serves, the peers keep their ids and fds and hear of a
// newcomer from it, and no fd of the successor leaks. Repeated, seeded, bounded in time.
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IvshmemClient } from '../../src/client/ivshmem-client.js';
import { takeOver } from '../../src/server/handover.js';
import { killAfterTest, killStartedProcesses } from '../support/cli-process.js';
import { openFdCount } from '../support/fd-leaks.js';
import { Rng } from '../support/rng.js';
import { until } from '../support/until.js';

const ITERATIONS = 40;
const SEED = Number(process.env.HANDOVER_STRESS_SEED ?? 0x5eed13);
let dir: string;
let n = 0;
const shmPrefix = `ivshmem-test-handover-stress-${process.pid}-`;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ivshmem-handover-stress-'));
});
afterAll(() => {
  killStartedProcesses();
  rmSync(dir, { recursive: true, force: true });
  for (const f of readdirSync('/dev/shm')) if (f.startsWith(shmPrefix)) rmSync(join('/dev/shm', f));
});

function when(rng: Rng): string {
  switch (rng.int(5)) {
    case 0:
      return 'microtask';
    case 1:
      return 'immediate';
    case 2:
      return 'timer';
    case 3:
      return 'commit';
    default:
      return `delay:${(rng.int(3000) / 1000).toFixed(3)}`;
  }
}

async function oneHandover(when: string): Promise<void> {
  const sock = join(dir, `s${n}.sock`);
  const ctl = join(dir, `c${n}.ctl`);
  const shm = `${shmPrefix}${n++}`;
  const holder = spawn(process.execPath, [
    fileURLToPath(new URL('../support/handover-crashing-holder.mjs', import.meta.url)),
    sock,
    ctl,
    shm,
    when,
  ]);
  killAfterTest(holder);
  let said = '';
  holder.stdout.on('data', (d) => (said += d));
  holder.stderr.on('data', (d) => (said += d));
  await until(() => said.includes('ready'), `the holder starting; it said: ${said}`, 10_000);
  const clients: IvshmemClient[] = [];
  try {
    const a = await IvshmemClient.connect(sock, { vectors: 2 });
    clients.push(a);
    const b = await IvshmemClient.connect(sock, { vectors: 2 });
    clients.push(b);
    const joined: number[] = [];
    a.on('join', (p) => joined.push(p));
    await until(() => a.connection.peers.has(1) && b.connection.ownVectors.length === 2, 'a and b set up');
    const fdsBefore = openFdCount();
    const log: string[] = [];
    const taken = await takeOver(ctl, { log: (l) => log.push(l) }).catch((err: Error) => {
      throw new Error(
        `hand-over with the holder dying at "${when}" failed: ${err.message}\n  log: ${log.join('\n  ')}`,
      );
    });
    try {
      expect(taken.server.peerIds).toEqual([0, 1]);
      const c = await IvshmemClient.connect(sock, { vectors: 2 });
      clients.push(c);
      expect(c.id).toBe(2);
      await until(() => joined.includes(2), `a hearing of the newcomer from the successor (holder died at "${when}")`);
      c.close();
      clients.pop();
      await until(() => !a.connection.peers.has(2), 'the newcomer leaving');
    } finally {
      taken.offer.close();
      taken.server.close();
    }
    await until(() => holder.exitCode !== null || holder.signalCode !== null, 'the holder reaped', 5000);
    expect(holder.signalCode).toBe('SIGKILL');
    for (const x of clients) x.close();
    clients.length = 0;
    // What the successor took over it gave back; the clients' own fds were counted before.
    expect(openFdCount()).toBeLessThanOrEqual(fdsBefore);
  } finally {
    for (const x of clients) x.close();
  }
}

describe('a server hand-over whose old server dies at random points after sending its state', () => {
  it(`the successor serves in its place every time (${ITERATIONS} runs, seed ${SEED})`, async () => {
    const rng = new Rng(SEED);
    const failures: string[] = [];
    for (let i = 0; i < ITERATIONS; i++) {
      const w = when(rng);
      try {
        await oneHandover(w);
      } catch (err) {
        failures.push(`run ${i} (${w}): ${(err as Error).message}`);
      }
    }
    expect(failures).toEqual([]);
  }, 120_000);
});
