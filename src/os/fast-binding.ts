// The fast-call module (native/fast/): the eventfd write and drain that run on every doorbell,
// called by optimised code through V8's fast API, without N-API's crossing. It is optional. It is
// built from source for one Node (the package's prebuilds leave it out), so when it is absent,
// built for another Node, or switched off with IVSHMEM_FAST_API=0 (as the tests of the fallback
// do), every caller uses the N-API addon instead. fastCallStatus() says which one is in use, and why.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { getSystemErrorMap } from 'node:util';
import { argumentError } from '../errors.js';
import { addonPath } from './binding.js';

export interface FastBinding {
  /** 0, or the errno of the failed write(2). */
  eventfdSignal(fd: number): number;
  /** The counter (0 if nothing was signalled), or minus the errno of the failed read(2). */
  eventfdDrain(fd: number): number;
  /** Up to `rounds` non-blocking reads: the count once doorbells came, 0 when the rounds ran out,
   *  or minus the errno of a failed read. A busy poll's wait on one fd. */
  spinRead(fd: number, rounds: number): number;
  /** Does nothing, as a fast call (the benchmark's measure of the call itself); returns 0. */
  nop(fd: number): number;
  /** How often each body ran in this process: V8's fast call, or the callback it falls back to. */
  calls(): { fast: number; slow: number };
  /** Whether this build has fast bodies at all (V8 versions it knows); without, only the callbacks. */
  readonly fastCalls: boolean;
}

let fast: FastBinding | null | undefined;
let status = '';

/** The fast-call module, or null where the N-API addon is to be used. Loaded on first use. */
export function fastBinding(): FastBinding | null {
  if (fast === undefined) fast = load();
  return fast;
}

/** Which path the per-doorbell calls take here, and why: for `ivshmem info` and bug reports. */
export function fastCallStatus(): string {
  fastBinding();
  return status;
}

function load(): FastBinding | null {
  if (process.env.IVSHMEM_FAST_API === '0') {
    status = 'off (IVSHMEM_FAST_API=0): the N-API addon';
    return null;
  }
  let file: string;
  try {
    file = join(dirname(addonPath()), 'ivshmem_fast.node');
  } catch (err) {
    // No addon at all: the caller's own call to it reports that, with the way to build it.
    status = `absent (${(err as Error).message})`;
    return null;
  }
  if (!existsSync(file)) {
    status = `absent (no ${file}; the package's prebuilds have none, a build from source makes it): the N-API addon`;
    return null;
  }
  try {
    const b = createRequire(import.meta.url)(file) as FastBinding;
    status = b.fastCalls ? `on: ${file}` : `callbacks only (this V8 has no fast calls this build knows): ${file}`;
    return b;
  } catch (err) {
    // Built for another Node (NODE_MODULE_VERSION), for instance: the addon serves instead.
    status = `not loaded (${(err as Error).message.split('\n')[0]}): the N-API addon`;
    return null;
  }
}

/**
 * The fast bodies take an int32 as it comes, where the addon refuses anything else: callers check
 * here first, with the addon's errors (a TypeError for a non-number, a RangeError for the rest).
 */
export function checkInt32(value: number, name: string): void {
  if ((value | 0) === value) return;
  if (typeof value !== 'number')
    throw argumentError(TypeError, 'ERR_INVALID_ARG_TYPE', `argument ${name} must be a number`);
  throw argumentError(RangeError, 'ERR_OUT_OF_RANGE', `argument ${name} must be a 32-bit integer`);
}

/** An error like the ones Node's own system calls throw: code, errno (negative), syscall. */
export function errnoError(errno: number, syscall: string): NodeJS.ErrnoException {
  const [code, text] = getSystemErrorMap().get(-errno) ?? [`E${errno}`, 'unknown error'];
  const error: NodeJS.ErrnoException = new Error(`${code}: ${text}, ${syscall}`);
  error.code = code;
  error.errno = -errno;
  error.syscall = syscall;
  return error;
}
