// The bundled command-line tools (dist/*.js) run as separate processes, the way a person runs
// them: everything they print (stdout and stderr) collected in one text, waits for a line bounded
// in time, and every process still running killed after the test that started it.
import { spawn } from 'node:child_process';
import type { ChildProcess, ChildProcessWithoutNullStreams } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { until } from './until.js';

const dist = fileURLToPath(new URL('../../dist/', import.meta.url));
const started = new Set<ChildProcess>();

export interface CliProcess {
  child: ChildProcessWithoutNullStreams;
  /** Everything printed so far. */
  out(): string;
  /** Resolves once the output contains `pattern`; fails, with the output, after `ms`. */
  waitFor(pattern: string | RegExp, ms?: number): Promise<void>;
  /** Writes one line to stdin. */
  send(line: string): void;
  /** Resolves with the exit code (null when a signal ended it). */
  exited(): Promise<number | null>;
}

export interface CliOptions {
  /** Shell commands run before the tool in the same shell (e.g. `ulimit -n 64;`). */
  shellPrefix?: string;
  /** waitFor's default time limit. */
  waitMs?: number;
  /** In a process group of its own, so a signal can go to the group as a terminal's Ctrl-C does. */
  detached?: boolean;
}

/** Starts `dist/<script>` with `args` under this Node. */
export function startCli(script: string, args: string[], options: CliOptions = {}): CliProcess {
  const argv = [join(dist, script), ...args];
  const child = options.shellPrefix
    ? spawn('sh', ['-c', `${options.shellPrefix} exec "${process.execPath}" ${argv.map((a) => `'${a}'`).join(' ')}`])
    : spawn(process.execPath, argv, { detached: options.detached === true });
  killAfterTest(child);
  let text = '';
  child.stdout.on('data', (d) => (text += d));
  child.stderr.on('data', (d) => (text += d));
  // Listened for at once, so an exit before anyone asks is not missed.
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const hit = (pattern: string | RegExp) => (typeof pattern === 'string' ? text.includes(pattern) : pattern.test(text));
  return {
    child,
    out: () => text,
    send: (line) => child.stdin.write(`${line}\n`),
    exited: () => exit,
    waitFor: async (pattern, ms = options.waitMs ?? 5000) => {
      try {
        await until(() => hit(pattern), String(pattern), ms, 10);
      } catch {
        // The output as it is at the deadline, not when the wait began.
        throw new Error(
          `${script} never printed ${pattern} within ${ms} ms; it (exit ${child.exitCode ?? child.signalCode}) printed:\n${text}`,
        );
      }
    },
  };
}

/** Registers a child process of any kind to be killed by killStartedProcesses(). */
export function killAfterTest(child: ChildProcess): void {
  started.add(child);
}

/** SIGKILLs every registered process still running (for afterEach). */
export function killStartedProcesses(): void {
  for (const child of started) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  started.clear();
}
