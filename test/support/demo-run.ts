// A run of `ivshmem demo` (dist/cli.js) watched from outside, as a person at a terminal runs it: in
// a process group of its own, so a signal can go to the group (Ctrl-C) or to the demo alone
// (kill). What it leaves is judged only by names no other run can have: /dev/shm/ivshmem-demo-<pid>,
// <tmpdir>/ivshmem-demo-<pid>-*, and peer processes whose socket lies in that folder. So a test
// never mistakes another run's files (a parallel test's, or a crashed run's from long ago) for
// its own, and never removes them either.
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startCli } from './cli-process.js';
import type { CliProcess } from './cli-process.js';

export interface DemoExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface DemoRun {
  pid: number;
  child: CliProcess['child'];
  /** stdout and stderr so far, interleaved. */
  out(): string;
  /** The exit, once the demo is reaped (so its pid is gone from the process table). */
  exited: Promise<DemoExit>;
  /** Once its output is complete too: its stdout and stderr, which its peers share, are closed. */
  closed: Promise<void>;
}

export interface DemoTraces {
  shm: string[];
  dirs: string[];
  /** Pids of peer processes still running. */
  peers: number[];
}

const runs: DemoRun[] = [];

export function startDemo(args: string[]): DemoRun {
  const cli = startCli('cli.js', ['demo', ...args], { detached: true });
  const { child } = cli;
  const exited = new Promise<DemoExit>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
  const run = { pid: child.pid!, child, out: cli.out, exited, closed };
  runs.push(run);
  return run;
}

async function within<T>(p: Promise<T>, ms: number, what: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(what())), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The exit, or a failure with what the demo printed if it has not exited within `ms`. Then waits
 * (bounded) for the rest of its output; a peer that outlived it holds that open, which the
 * caller's look at traces() will show.
 */
export async function exitOf(run: DemoRun, ms = 60_000): Promise<DemoExit> {
  const exit = await within(
    run.exited,
    ms,
    () => `the demo (pid ${run.pid}) did not exit within ${ms} ms; it printed:\n${run.out()}`,
  );
  await within(run.closed, 10_000, () => '').catch(() => {});
  return exit;
}

function peerProcesses(pid: number): number[] {
  const folder = join(tmpdir(), `ivshmem-demo-${pid}-`);
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
    } catch {
      continue; // exited while we looked
    }
    // A zombie has an empty command line: it runs no more, whoever reaps it.
    if (argv.includes('__demo-peer') && argv.some((a) => a.startsWith(folder))) found.push(Number(entry));
  }
  return found;
}

/** What the demo with this pid has on the machine now. */
export function traces(pid: number): DemoTraces {
  return {
    shm: readdirSync('/dev/shm').filter((f) => f === `ivshmem-demo-${pid}`),
    dirs: readdirSync(tmpdir()).filter((f) => f.startsWith(`ivshmem-demo-${pid}-`)),
    peers: peerProcesses(pid),
  };
}

export const NO_TRACES: DemoTraces = { shm: [], dirs: [], peers: [] };

/** For afterEach: ends every run this file started and removes what each left, by its own names only. */
export async function removeDemoRuns(): Promise<void> {
  for (const run of runs.splice(0)) {
    if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill('SIGKILL');
    await exitOf(run, 10_000).catch(() => {});
    const left = traces(run.pid);
    for (const peer of left.peers) {
      try {
        process.kill(peer, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
    for (const f of left.shm) rmSync(join('/dev/shm', f), { force: true });
    for (const f of left.dirs) rmSync(join(tmpdir(), f), { recursive: true, force: true });
  }
}
