// Runs the native tests' helper scripts (test/support/native-child.mjs in a child process,
// native-worker.mjs in a worker thread) with a time limit, collecting what they report. A child
// or worker still running at the limit is killed (SIGKILL) or terminated, and the run fails.
import { spawn } from 'node:child_process';
import type { StdioOptions } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { nativeBundle } from './native-bundle.js';

export const CHILD_SCRIPT = fileURLToPath(new URL('./native-child.mjs', import.meta.url));
export const WORKER_SCRIPT = fileURLToPath(new URL('./native-worker.mjs', import.meta.url));

export interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs native-child.mjs SCENARIO ARG; extra fds (3, 4, …) may be passed through stdio. */
export function runChild(
  scenario: string,
  arg = '',
  extraFds: number[] = [],
  timeoutMs = 15_000,
): Promise<ChildResult> {
  const stdio: StdioOptions = ['ignore', 'pipe', 'pipe', ...extraFds];
  const child = spawn(process.execPath, [CHILD_SCRIPT, nativeBundle(), scenario, arg], { stdio });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`native-child ${scenario} still running after ${timeoutMs} ms; stderr: ${stderr}`));
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    // 'close': the process ended and its stdio pipes are closed (their fds given back).
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Spawns a child that does nothing: what Node opens on a first spawn is then open already. */
export async function warmUpSpawn(): Promise<void> {
  const r = await runChild('noop');
  if (r.code !== 0) throw new Error(`native-child noop failed: ${r.stderr}`);
}

export interface WorkerRun {
  worker: Worker;
  /** Resolves with the next message satisfying `accept` (messages already received count). */
  next(accept: (m: Record<string, unknown>) => boolean): Promise<Record<string, unknown>>;
  messages: Record<string, unknown>[];
  /** Resolves with the exit code once the thread is gone (and its env cleaned up). */
  exited: Promise<number>;
}

/** Starts native-worker.mjs with workerData { bundle, ...data }; terminated if still running after timeoutMs. */
export function startWorker(data: Record<string, unknown>, timeoutMs = 15_000): WorkerRun {
  const worker = new Worker(WORKER_SCRIPT, { workerData: { bundle: nativeBundle(), ...data } });
  const messages: Record<string, unknown>[] = [];
  const waiting: { accept: (m: Record<string, unknown>) => boolean; resolve: (m: Record<string, unknown>) => void }[] =
    [];
  let failure: Error | undefined;
  const rejecters = new Set<(err: Error) => void>();
  const fail = (err: Error) => {
    failure ??= err;
    for (const r of rejecters) r(failure);
  };
  worker.on('message', (m: Record<string, unknown>) => {
    messages.push(m);
    for (let i = 0; i < waiting.length; i++) {
      if (waiting[i].accept(m)) {
        waiting[i].resolve(m);
        waiting.splice(i, 1);
        break;
      }
    }
  });
  worker.on('error', fail);
  const timer = setTimeout(() => {
    fail(new Error(`native-worker ${String(data.scenario)} still running after ${timeoutMs} ms`));
    void worker.terminate();
  }, timeoutMs);
  const exited = new Promise<number>((resolve, reject) => {
    rejecters.add(reject);
    worker.on('exit', (code) => {
      clearTimeout(timer);
      if (failure) reject(failure);
      else resolve(code);
      // Nothing more will arrive for anyone still waiting.
      if (waiting.length > 0)
        fail(new Error(`native-worker ${String(data.scenario)} exited (${code}) before the awaited message`));
    });
  });
  exited.catch(() => {}); // observed by whoever awaits it
  const next = (accept: (m: Record<string, unknown>) => boolean) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      if (failure) return reject(failure);
      const seen = messages.find(accept);
      if (seen) return resolve(seen);
      rejecters.add(reject);
      waiting.push({ accept, resolve });
    });
  return { worker, next, messages, exited };
}
