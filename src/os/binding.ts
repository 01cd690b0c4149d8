// The native addon's whole raw surface, declared once and loaded once per thread. Not exported
// from the package: the wrappers beside this file validate arguments and own the handles.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { IvshmemError } from '../errors.js';

export interface RawRecv {
  /** Bytes read: 0 at end of stream, -1 when nothing is waiting. */
  bytes: number;
  fds: number[];
}

/** FdWatcher events: a non-draining watcher's callback gets these, or-ed, as its second argument. */
export const POLL_READABLE = 1;
export const POLL_WRITABLE = 2;

export interface RawFdWatcher {
  /** Starts (or changes) watching: readable by default; eventfd (draining) watchers only read. */
  start(events?: number): void;
  stop(): void;
  ref(): void;
  unref(): void;
  close(): void;
}

export interface RawVcpuKicker {
  setFds(fds: Int32Array): void;
  setLoop(on: boolean): void;
  armedView(): Int32Array;
  arm(): void;
  close(): void;
  readonly kicks: number;
}

export interface RawBinding {
  eventfdCreate(): number;
  eventfdSignal(fd: number): void;
  eventfdDrain(fd: number): number;
  close(fd: number): void;
  isOwnedFd(fd: number): boolean;

  shmOpen(name: string, create: boolean, exclusive: boolean, mode: number): number;
  shmUnlink(name: string): void;
  openFile(path: string, create: boolean, exclusive: boolean, mode: number): number;
  memfdCreate(name: string, sealable: boolean): number;
  tempFileIn(dir: string): number;
  ftruncate(fd: number, size: number | bigint): void;
  fstat(fd: number): { size: number; isFile: boolean; ino: number; dev: number };
  /** An exclusive flock on the fd's open file description; false when another holds it. */
  tryLock(fd: number): boolean;
  sealShrink(fd: number): void;
  /** F_GET_SEALS, or -1 for an object that cannot carry seals. */
  fileSeals(fd: number): number;
  setNonBlocking(fd: number): void;
  mmap(fd: number, length: number | bigint): ArrayBuffer;
  munmap(buffer: ArrayBuffer): boolean;

  listen(path: string, backlog: number): number;
  /** Whether a socket listens at `path`, from the kernel's socket table (nothing connects);
   *  null where that table cannot be read. */
  listening(path: string): boolean | null;
  accept(fd: number): number;
  connect(path: string): number;
  socketPair(): [number, number];
  send(fd: number, bytes: Uint8Array, fds: number[]): number;
  recv(fd: number, buffer: Uint8Array, offset: number, length: number): RawRecv;
  /** how: 0 SHUT_RD, 1 SHUT_WR, 2 SHUT_RDWR (the default). */
  shutdown(fd: number, how?: number): void;

  FdWatcher: new (
    fd: number,
    drainEventfd: boolean,
    callback: (err: Error | null, count?: number) => void,
  ) => RawFdWatcher;
  waitReadable(fds: Int32Array, timeoutMs: number, out?: Float64Array): number;
  spinReadable(fds: Int32Array, maxRounds: number, out?: Float64Array): number;
  readBlocking(fd: number, out: Float64Array, timeoutMs?: number): -1 | 0 | 1;
  addStopMark(fd: number): void;
  monotonicNs(out: Float64Array, index?: number): void;
  setBlocking(fd: number, blocking: boolean): void;

  kvmOpen(): number;
  kvmCheckExtension(fd: number, cap: number): number;
  kvmCreateVm(kvmFd: number): number;
  kvmAllocMemory(size: number): ArrayBuffer;
  kvmSetMemory(vmFd: number, slot: number, guestPhys: number | bigint, memory: ArrayBuffer | null): void;
  kvmCreateVcpu(vmFd: number, id?: number): number;
  kvmRunBuffer(vcpuFd: number): ArrayBuffer;
  kvmSetRealMode(vcpuFd: number, rip: number): void;
  /** The exit reason, or -1 when a signal interrupted KVM_RUN. */
  kvmRun(vcpuFd: number, run: ArrayBuffer): number;
  kvmIoeventfd(
    vmFd: number,
    addr: number | bigint,
    len: number,
    datamatch: number | bigint,
    eventfd: number,
    deassign?: boolean,
  ): void;
  kvmCreateIrqchip(vmFd: number): void;
  kvmIrqLine(vmFd: number, irq: number, level: number): void;
  kvmIrqfd(vmFd: number, gsi: number, eventfd: number, deassign?: boolean): void;
  kvmSignalMsi(vmFd: number, address: number, data: number): number;
  kvmSetGsiRouting(vmFd: number, records: Float64Array): void;
  VcpuKicker: new (vcpuFd: number) => RawVcpuKicker;
}

// The package root: the nearest folder upward whose package.json is ours, whether this code runs
// as the TypeScript source (src/os/, under vitest), in the package's bundle (dist/) or in a test
// bundle (out/test-*/): paths are the package's, not this file's.
function packageRoot(): string | undefined {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    try {
      if ((JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown }).name === 'ivshmem-ts')
        return dir;
    } catch {
      // no package.json here, or not JSON: look further up
    }
    const up = dirname(dir);
    if (up === dir) return undefined;
    dir = up;
  }
}

// node-gyp-build picks what exists in the package root: build/Release (a build from source: a
// checkout's `npm install`, or the install-time fallback where no prebuild fits this machine)
// before prebuilds/<platform>-<arch>/ (shipped in the package, made by scripts/prebuild.mjs).
// IVSHMEM_NATIVE_ADDON, an absolute path, names another build of the same addon to load instead:
// the AddressSanitizer build the native tests also run under (scripts/test-asan.mjs). Child
// processes and worker threads inherit it, so they load that build too.
function findAddon(): string {
  const override = process.env.IVSHMEM_NATIVE_ADDON;
  if (override) {
    if (!override.startsWith('/'))
      throw new IvshmemError('ERR_IVSHMEM_NATIVE', `IVSHMEM_NATIVE_ADDON must be an absolute path, not ${override}`);
    if (!existsSync(override))
      throw new IvshmemError('ERR_IVSHMEM_NATIVE', `IVSHMEM_NATIVE_ADDON names ${override}, which does not exist`);
    return override;
  }
  const root = packageRoot();
  const built = 'build/Release/ivshmem_native.node (built from source)';
  const shipped = `prebuilds/${process.platform}-${process.arch}/*.node (shipped in the package)`;
  if (root === undefined) {
    throw new IvshmemError(
      'ERR_IVSHMEM_NATIVE',
      `the native addon cannot be found: no ivshmem-ts package.json above ${fileURLToPath(import.meta.url)} to look for ${built} or ${shipped} in`,
    );
  }
  // By name: build/Release also holds the fast-call module, and node-gyp-build takes its first .node.
  const own = join(root, 'build/Release/ivshmem_native.node');
  if (existsSync(own)) return own;
  try {
    const nodeGypBuild = createRequire(import.meta.url)('node-gyp-build') as { path(dir: string): string };
    return nodeGypBuild.path(root);
  } catch (err) {
    throw new IvshmemError(
      'ERR_IVSHMEM_NATIVE',
      `the native addon is missing: found neither ${built} nor ${shipped} in ${root}. Build it from source with \`npm rebuild ivshmem-ts\` ` +
        '(in a checkout of ivshmem-ts: `npm install`), which needs python3, make and g++',
      { cause: err },
    );
  }
}

// A file that is there but does not load (another architecture, a newer glibc than this
// machine's, a truncated copy) is named with the loader's reason.
function load(file: string): RawBinding {
  try {
    return createRequire(import.meta.url)(file) as RawBinding;
  } catch (err) {
    throw new IvshmemError(
      'ERR_IVSHMEM_NATIVE',
      `the native addon ${file} cannot be loaded: ${(err as Error).message}`,
      { cause: err },
    );
  }
}

let loaded: RawBinding | undefined;
let path: string | undefined;

/** The file the addon is loaded from (the fast-call module, fast-binding.ts, is looked for beside it). */
export function addonPath(): string {
  path ??= findAddon();
  return path;
}

export function native(): RawBinding {
  loaded ??= load(addonPath());
  return loaded;
}
