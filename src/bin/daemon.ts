// ivshmem-server's background mode. QEMU's server forks after it has started, so a start that
// fails is reported on the terminal with exit status 1. Node cannot fork, so the parent starts
// the server again in the foreground as a detached child and waits on a pipe for the child to
// say it is serving (exit 0) or why it could not start (its message, exit 1); the child writes
// its own pid file and removes it when it stops.
import { spawn } from 'node:child_process';
import { closeSync, writeSync } from 'node:fs';
import type { Readable } from 'node:stream';

const READY_FD_ENV = 'IVSHMEM_SERVER_READY_FD';
const READY_FD = 3;
/** A start takes milliseconds; a takeover of many peers a little longer. Beyond this, give up. */
const READY_TIMEOUT_MS = 60_000;

export async function daemonize(argv: string[], pidfile: string, err: NodeJS.WritableStream): Promise<number> {
  // Whatever came before our own arguments (e.g. the umbrella's "server") is kept.
  const prefix = process.argv.slice(2, process.argv.length - argv.length);
  const child = spawn(
    process.execPath,
    [...process.execArgv, process.argv[1], ...prefix, ...argv, '-F', '-p', pidfile],
    {
      detached: true,
      stdio: ['ignore', 'ignore', 'ignore', 'pipe'],
      env: { ...process.env, [READY_FD_ENV]: String(READY_FD) },
    },
  );
  const channel = child.stdio[READY_FD] as Readable;
  let said = '';
  channel.setEncoding('utf8');
  channel.on('data', (chunk: string) => (said += chunk));
  const exited = new Promise<string>((resolve) => {
    child.once('exit', (code, signal) => resolve(signal ? `was killed by ${signal}` : `exited with status ${code}`));
    child.once('error', (e) => resolve(`could not be started: ${e.message}`));
  });
  const outcome = await new Promise<string>((resolve) => {
    const timer = setTimeout(() => resolve('timeout'), READY_TIMEOUT_MS);
    channel.once('close', () => {
      clearTimeout(timer);
      resolve(said);
    });
  });
  if (outcome.startsWith('ok')) {
    child.unref();
    channel.destroy();
    return 0;
  }
  if (outcome === 'timeout') {
    child.kill('SIGTERM');
    err.write(
      `ivshmem-server: the server did not report that it started within ${READY_TIMEOUT_MS / 1000} s; stopped it\n`,
    );
    return 1;
  }
  if (outcome.startsWith('error ')) err.write(`ivshmem-server: ${outcome.slice(6).trim()}\n`);
  else err.write(`ivshmem-server: the server ${await exited} before it started\n`);
  return 1;
}

export interface Readiness {
  ok(): void;
  fail(message: string): void;
}

/** In the background server: the pipe to the waiting parent, or undefined in the foreground. */
export function readinessChannel(): Readiness | undefined {
  const fd = Number(process.env[READY_FD_ENV]);
  delete process.env[READY_FD_ENV];
  if (!Number.isInteger(fd) || fd < 0) return undefined;
  const say = (text: string) => {
    try {
      writeSync(fd, text);
      closeSync(fd);
    } catch {
      // the parent is gone: nobody is waiting to hear
    }
  };
  return { ok: () => say('ok\n'), fail: (message) => say(`error ${message}\n`) };
}
