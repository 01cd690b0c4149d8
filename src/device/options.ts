// Validation of IvshmemDevice options, before anything is built: each refusal names the option,
// the value and the rule, with a stable code.
import { checkKnownKeys, describeValue, invalidValue, IvshmemError } from '../errors.js';
import type { ConnectionHandover } from '../protocol/connection-handover.js';
import { isPortLike } from '../protocol/directory-messages.js';
import type { PortLike } from '../protocol/directory-messages.js';
import type { ModelOptions } from './model.js';
import type { DeviceMode } from './pci/ivshmem-function.js';
import type { DoorbellSink, VmmTransport } from './transport.js';
import type { StateTableDeviceOption } from './peer-state.js';
import { FLAT_MAX_VECTORS, MAX_PEERS, MAX_VECTORS } from '../core/abi.js';
import { MAX_MAPPING, isSharedMemorySource } from '../os/memory-source.js';
import type { SharedMemorySource } from '../os/memory-source.js';

export type MasterOption = 'on' | 'off' | 'auto';

export interface IvshmemDeviceOptions {
  /**
   * 'plain' (shared memory only), 'doorbell' (MSI-X doorbells), 'intx' (the seed's INTx device), or
   * 'flat' (QEMU's ivshmem-flat: no PCI, the registers and the memory at `registersAddress` and
   * `memoryAddress`, one IRQ line pulsed through setIrqLevel(1) then setIrqLevel(0), 1..64 vectors).
   */
  mode?: DeviceMode;
  /** flat mode: the guest-physical address of the 16-byte register window (4-byte aligned). */
  registersAddress?: number | bigint;
  /** flat mode: the guest-physical address of the shared memory. */
  memoryAddress?: number | bigint;
  /**
   * BAR2's backing memory: real shared memory (`{ shm: name }` — the object QEMU opens as
   * memory-backend-file,mem-path=/dev/shm/NAME,share=on — `{ path }`, `{ memfd: name }`,
   * `{ hugetlbfs: dir }`), or any ArrayBuffer (private to this process).
   */
  memory?: ArrayBuffer | SharedArrayBuffer | SharedMemorySource;
  /**
   * Path of an ivshmem server's socket (doorbell and intx modes): the server assigns the id and
   * the memory, and announces the peers. Exclusive with `memory`, `size` and `doorbell`.
   */
  server?: string;
  /**
   * A port from PeerDirectory.connect() (doorbell and intx modes), for devices with no eventfds:
   * the directory assigns the id and gives the memory (a SharedArrayBuffer) and each peer's signal
   * buffer; doorbells are Atomics, and nothing loads the native addon. Exclusive with `server`.
   */
  directory?: PortLike;
  /** With `server`: give up if setup takes longer (default 5 s; QEMU would wait for ever). */
  setupTimeoutMs?: number;
  /** With `server`: speak the pre-2.5 protocol (no version message). */
  legacy?: boolean;
  /**
   * With `server`: refuse shared memory that cannot be sealed against shrinking (a POSIX shm
   * object, as QEMU's server sends) with ERR_IVSHMEM_PROTOCOL_SHM. A memfd is always sealed on
   * arrival; unsealable memory is otherwise accepted, as QEMU does, at the risk of SIGBUS if the
   * server truncates it later.
   */
  requireSealedMemory?: boolean;
  /**
   * With `server`: 'loop' (default) watches our own vectors' eventfds on this thread's event loop;
   * 'manual' leaves it to the embedder (a vCPU thread blocking or spinning on
   * `device.ownVectorFds`, then calling `fireVector`).
   */
  vectorWait?: 'loop' | 'manual';
  /**
   * BAR2 size in bytes, a power of two. An ArrayBuffer or existing object must hold at least this
   * much; a new (empty) object grows to it. Default: the memory's size.
   */
  size?: number;
  /** Interrupt vectors (doorbell and intx modes: 1..2048; flat: 1..64), default 1. */
  vectors?: number;
  /** This device's peer id, shown in IVPosition (doorbell and intx modes): 0..65535, default 0. */
  id?: number;
  /** Migration role, as QEMU's `master` property. Default 'off'. */
  master?: MasterOption;
  /** intx mode only: false gives a 32-bit BAR2, as QEMU's legacy `use64=0`. Default true. */
  use64?: boolean;
  /** The embedding monitor. */
  transport: VmmTransport;
  /** Where doorbell writes ring a peer's route handle. Needed before routes are connected. */
  doorbell?: DoorbellSink;
  /**
   * Take part in the server's peer state table (docs/peer-state-table.md; the server needs
   * stateTable too): `vector` is the one of ours the other peers ring when any entry changes, and
   * the State register (BAR0 0x10) publishes our guest's 32-bit state. Off by default: the device is
   * then QEMU's, register for register.
   */
  stateTable?: StateTableDeviceOption;
  /** PCI modes: the Subsystem ID the guest reads (0..0xffff), so a driver can tell regions apart. Default QEMU's 0x1100. */
  subsystemId?: number;
  /** Which core runs the registers: the WebAssembly core (default) or its TypeScript twin. */
  core?: 'wasm' | 'ts';
  /** A compiled core to use instead of the embedded release build (e.g. the debug build). */
  wasmModule?: WebAssembly.Module;
  /**
   * Take over a device another process handed over (IvshmemDevice.handOver): its server
   * connection (same id, same peers: the server notices nothing), memory and state. Exclusive
   * with `server`, `memory`, `size`, `id`, `master` and `doorbell`.
   */
  handover?: DeviceHandover;
}

/** What IvshmemDevice.handOver() gives, for IvshmemDevice.create({ handover }) in another process. */
export interface DeviceHandover {
  /** The connection's description and its fds (in that process: the fds it received). */
  connection: { description: ConnectionHandover; fds: number[] };
  /** The device's registers, config space, MSI-X table and PBA (saveState's format). */
  state: Uint8Array;
  master: boolean;
}

export interface ResolvedOptions extends ModelOptions {
  masterOption: MasterOption;
  setupTimeoutMs: number;
  requireSealedMemory: boolean;
  legacy: boolean;
  source: SharedMemorySource | undefined;
  handover: DeviceHandover | undefined;
  directory: PortLike | undefined;
}

const MODES: readonly DeviceMode[] = ['plain', 'doorbell', 'intx', 'flat'];
const TWO_64 = 2n ** 64n;
const MAX_BAR32_SIZE = 2 ** 31;
/** A memory BAR's low four bits are its type flags: sizing shows no BAR smaller than 16 bytes. */
export const MIN_BAR2_SIZE = 16;
/** Every option IvshmemDevice.create knows. */
export const OPTION_KEYS = [
  'mode',
  'memory',
  'server',
  'setupTimeoutMs',
  'legacy',
  'requireSealedMemory',
  'vectorWait',
  'size',
  'vectors',
  'id',
  'master',
  'use64',
  'transport',
  'doorbell',
  'core',
  'wasmModule',
  'handover',
  'directory',
  'registersAddress',
  'memoryAddress',
  'stateTable',
  'subsystemId',
];

function isPowerOfTwo(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && 2 ** Math.round(Math.log2(n)) === n;
}

function fail(code: ConstructorParameters<typeof IvshmemError>[0], message: string): never {
  throw new IvshmemError(code, message);
}

// A value of the wrong type is named as given: "vectors must be a number, got the string \"4\"".
function expectType(
  name: string,
  value: unknown,
  type: 'number' | 'boolean' | 'string',
  code: ConstructorParameters<typeof IvshmemError>[0] = 'ERR_IVSHMEM_INVALID_OPTION',
): void {
  if (value !== undefined && typeof value !== type) throw invalidValue(code, name, `a ${type}`, value);
}

export function resolveOptions(options: IvshmemDeviceOptions): ResolvedOptions {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    fail(
      'ERR_IVSHMEM_INVALID_OPTION',
      `options must be an object with at least a transport, got ${describeValue(options)}`,
    );
  }
  checkKnownKeys(options, OPTION_KEYS);
  expectType('vectors', options.vectors, 'number', 'ERR_IVSHMEM_INVALID_VECTORS');
  expectType('size', options.size, 'number', 'ERR_IVSHMEM_INVALID_SIZE');
  expectType('id', options.id, 'number', 'ERR_IVSHMEM_INVALID_PEER');
  expectType('setupTimeoutMs', options.setupTimeoutMs, 'number');
  expectType('legacy', options.legacy, 'boolean');
  expectType('requireSealedMemory', options.requireSealedMemory, 'boolean');
  expectType('use64', options.use64, 'boolean');
  const mode = options.mode ?? 'plain';
  if (!MODES.includes(mode)) {
    fail('ERR_IVSHMEM_INVALID_MODE', `mode ${JSON.stringify(mode)} is unknown; use one of ${MODES.join(', ')}`);
  }

  const { memory, transport, handover } = options;
  let server = options.server;
  if (handover !== undefined) {
    if (
      handover === null ||
      typeof handover !== 'object' ||
      typeof handover.connection?.description?.path !== 'string' ||
      !Array.isArray(handover.connection.fds) ||
      !(handover.state instanceof Uint8Array)
    ) {
      fail('ERR_IVSHMEM_INVALID_OPTION', 'handover must be what IvshmemDevice.handOver() returned');
    }
    for (const k of ['server', 'id', 'master'] as const) {
      if (options[k] !== undefined)
        fail('ERR_IVSHMEM_INVALID_OPTION', `${k} comes with the hand-over: do not pass it with handover`);
    }
    server = handover.connection.description.path; // checked below as a server-joined device
  }
  const directory = options.directory;
  if (directory !== undefined) {
    if (!isPortLike(directory))
      fail('ERR_IVSHMEM_INVALID_OPTION', 'directory must be a MessagePort from PeerDirectory.connect()');
    if (server !== undefined || handover !== undefined)
      fail('ERR_IVSHMEM_INVALID_OPTION', 'a device joins a server or a directory, not both');
    if (mode === 'plain')
      fail('ERR_IVSHMEM_INVALID_OPTION', 'a plain device has no directory: use mode doorbell (or intx)');
    for (const k of ['memory', 'size', 'doorbell', 'id'] as const) {
      if (options[k] !== undefined)
        fail('ERR_IVSHMEM_INVALID_OPTION', `${k} comes from the directory: do not pass it with directory`);
    }
  }
  const joined = server !== undefined || directory !== undefined;
  const source = isSharedMemorySource(memory) ? memory : undefined;
  const isBuffer =
    memory instanceof ArrayBuffer || (typeof SharedArrayBuffer !== 'undefined' && memory instanceof SharedArrayBuffer);
  if (server !== undefined) {
    if (typeof server !== 'string' || server === '') fail('ERR_IVSHMEM_INVALID_OPTION', 'server must be a socket path');
    if (mode === 'plain')
      fail('ERR_IVSHMEM_INVALID_OPTION', 'a plain device has no server: use mode doorbell (or intx)');
    for (const k of ['memory', 'size', 'doorbell'] as const) {
      if (options[k] !== undefined)
        fail('ERR_IVSHMEM_INVALID_OPTION', `${k} comes from the server: do not pass it with server`);
    }
  } else if (directory === undefined && !isBuffer && source === undefined) {
    fail(
      'ERR_IVSHMEM_INVALID_OPTION',
      'memory must be { shm }, { path }, { memfd }, { hugetlbfs } or an ArrayBuffer (or give a server)',
    );
  }
  if (
    transport === null ||
    typeof transport !== 'object' ||
    typeof transport.setIrqLevel !== 'function' ||
    typeof transport.sendMsi !== 'function'
  ) {
    fail('ERR_IVSHMEM_INVALID_OPTION', 'transport must implement setIrqLevel() and sendMsi()');
  }

  if (options.vectors !== undefined && mode === 'plain') {
    fail('ERR_IVSHMEM_INVALID_OPTION', 'vectors apply to the doorbell and intx modes; plain has no interrupts');
  }
  const vectors = options.vectors ?? (mode === 'plain' ? 0 : 1);
  if (mode !== 'plain' && (!Number.isInteger(vectors) || vectors < 1 || vectors > MAX_VECTORS)) {
    fail('ERR_IVSHMEM_INVALID_VECTORS', `vectors ${vectors} is out of range: MSI-X allows 1..${MAX_VECTORS}`);
  }
  if (mode === 'flat' && vectors > FLAT_MAX_VECTORS) {
    fail(
      'ERR_IVSHMEM_INVALID_VECTORS',
      `vectors ${vectors} is out of range: ivshmem-flat allows 1..${FLAT_MAX_VECTORS}`,
    );
  }
  const registersAddress = flatAddress('registersAddress', options.registersAddress, mode);
  const memoryAddress = flatAddress('memoryAddress', options.memoryAddress, mode);
  if (registersAddress !== undefined && registersAddress % 4n !== 0n)
    fail('ERR_IVSHMEM_INVALID_OPTION', `registersAddress 0x${registersAddress.toString(16)} is not 4-byte aligned`);

  const id = options.id ?? 0;
  if (!Number.isInteger(id) || id < 0 || id >= MAX_PEERS) {
    fail('ERR_IVSHMEM_INVALID_PEER', `id ${id} is out of range 0..${MAX_PEERS - 1}`);
  }
  if (mode === 'plain' && id !== 0) fail('ERR_IVSHMEM_INVALID_PEER', 'a plain device has no peer id (IVPosition is 0)');
  if (server !== undefined && options.id !== undefined)
    fail('ERR_IVSHMEM_INVALID_OPTION', 'id comes from the server: do not pass it with server');

  const masterOption = options.master ?? 'off';
  if (masterOption !== 'on' && masterOption !== 'off' && masterOption !== 'auto') {
    fail('ERR_IVSHMEM_INVALID_OPTION', `master ${JSON.stringify(masterOption)} must be 'on', 'off' or 'auto'`);
  }
  if (masterOption === 'on' && id !== 0 && !joined) {
    fail('ERR_IVSHMEM_MASTER', `master must connect to the server before any peers (id is ${id}, master needs 0)`);
  }
  const master = masterOption === 'on' || (masterOption === 'auto' && id === 0);

  const use64 = options.use64 ?? true;
  if (typeof use64 !== 'boolean') fail('ERR_IVSHMEM_INVALID_OPTION', 'use64 must be a boolean');
  if (!use64 && mode !== 'intx')
    fail(
      'ERR_IVSHMEM_INVALID_OPTION',
      'use64: false exists only for the intx (legacy) mode; plain and doorbell BAR2 is always 64-bit',
    );
  const available = isBuffer ? (memory as ArrayBuffer).byteLength : Infinity;
  const size = options.size ?? (isBuffer ? available : undefined);
  if (size !== undefined) checkBar2Size(size, available, use64, mode);

  if (options.wasmModule !== undefined && !(options.wasmModule instanceof WebAssembly.Module)) {
    throw invalidValue('ERR_IVSHMEM_INVALID_OPTION', 'wasmModule', 'a WebAssembly.Module', options.wasmModule);
  }
  const core = options.core ?? 'wasm';
  if (core !== 'wasm' && core !== 'ts')
    fail('ERR_IVSHMEM_INVALID_OPTION', `core ${JSON.stringify(core)} must be 'wasm' or 'ts'`);
  if (options.doorbell !== undefined && typeof options.doorbell?.ring !== 'function') {
    fail('ERR_IVSHMEM_INVALID_OPTION', 'doorbell must implement ring(handle)');
  }

  const vectorWait = options.vectorWait ?? 'loop';
  if (vectorWait !== 'loop' && vectorWait !== 'manual')
    fail('ERR_IVSHMEM_INVALID_OPTION', "vectorWait must be 'loop' or 'manual'");
  const setupTimeoutMs = options.setupTimeoutMs ?? 5000;
  if (!(setupTimeoutMs > 0))
    fail('ERR_IVSHMEM_INVALID_OPTION', 'setupTimeoutMs must be a positive number of milliseconds');

  return {
    mode,
    server,
    masterOption,
    setupTimeoutMs,
    requireSealedMemory: options.requireSealedMemory === true,
    legacy: options.legacy === true,
    vectorWait,
    memory: isBuffer ? (memory as ArrayBuffer) : undefined,
    source,
    size,
    vectors,
    id,
    master,
    use64,
    transport,
    doorbell: options.doorbell,
    core,
    wasmModule: options.wasmModule,
    handover,
    directory,
    registersAddress,
    memoryAddress,
    stateTable: checkStateTableOption(options.stateTable, mode, vectors, server, directory),
    subsystemId: checkSubsystemId(options.subsystemId, mode),
  };
}

// The state table is the server's: a device joins one that keeps it, in a mode with vectors.
function checkStateTableOption(
  value: unknown,
  mode: DeviceMode,
  vectors: number,
  server: string | undefined,
  directory: PortLike | undefined,
): StateTableDeviceOption | undefined {
  if (value === undefined) return undefined;
  const o = value as StateTableDeviceOption;
  const keys = value !== null && typeof value === 'object' ? Object.keys(value) : ['?'];
  if (keys.some((k) => k !== 'vector' && k !== 'offset') || typeof o.vector !== 'number')
    throw invalidValue('ERR_IVSHMEM_INVALID_OPTION', 'stateTable', '{ vector, offset? }', value);
  if (o.offset !== undefined && (!Number.isInteger(o.offset) || o.offset < 0))
    throw invalidValue(
      'ERR_IVSHMEM_INVALID_OPTION',
      'stateTable.offset',
      'a byte offset in the shared memory',
      o.offset,
    );
  if (mode === 'plain') fail('ERR_IVSHMEM_INVALID_OPTION', 'a plain device has no vectors to hear a state table on');
  if (!Number.isInteger(o.vector) || o.vector < 0 || o.vector >= vectors)
    fail('ERR_IVSHMEM_INVALID_OPTION', `stateTable.vector ${o.vector} is not one of this device's ${vectors} vectors`);
  if (directory !== undefined)
    fail('ERR_IVSHMEM_INVALID_OPTION', 'the peer directory keeps no state table: join an ivshmem server for one');
  if (server === undefined)
    fail('ERR_IVSHMEM_INVALID_OPTION', 'stateTable needs a server: the server keeps the table and marks peers gone');
  return { vector: o.vector, offset: o.offset };
}

function checkSubsystemId(value: unknown, mode: DeviceMode): number | undefined {
  if (value === undefined) return undefined;
  if (mode === 'flat') fail('ERR_IVSHMEM_INVALID_OPTION', 'subsystemId is a PCI register: a flat device has none');
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 0xffff)
    throw invalidValue('ERR_IVSHMEM_INVALID_OPTION', 'subsystemId', 'an integer 0..0xffff', value);
  return value;
}

// A flat device's address: required in flat mode, refused in the others; a safe integer or a bigint below 2^64.
function flatAddress(name: string, value: unknown, mode: DeviceMode): bigint | undefined {
  if (mode !== 'flat') {
    if (value !== undefined) fail('ERR_IVSHMEM_INVALID_OPTION', `${name} applies to the flat mode only`);
    return undefined;
  }
  if (value === undefined)
    fail(
      'ERR_IVSHMEM_INVALID_OPTION',
      `${name} is required in flat mode: the device has no BAR for the guest to place`,
    );
  const n =
    typeof value === 'bigint' ? value : typeof value === 'number' && Number.isSafeInteger(value) ? BigInt(value) : -1n;
  if (n < 0n || n >= TWO_64) throw invalidValue('ERR_IVSHMEM_INVALID_OPTION', name, 'an address 0..2^64-1', value);
  return n;
}

/**
 * BAR2 size rules: a power of two, no larger than what backs it, within a 32-bit BAR if use64 is
 * off. ivshmem-flat has no BAR: any size up to its 32-bit shmem-size property will do.
 */
export function checkBar2Size(size: number, available: number, use64 = true, mode: DeviceMode = 'doorbell'): void {
  if (size === 0) fail('ERR_IVSHMEM_INVALID_SIZE', 'size is 0: BAR2 needs at least one power-of-two block of memory');
  if (mode === 'flat') {
    if (!Number.isSafeInteger(size) || size < 0 || size >= 2 ** 32)
      fail('ERR_IVSHMEM_INVALID_SIZE', `size ${size} does not fit ivshmem-flat's 32-bit memory size`);
    if (size > available)
      fail('ERR_IVSHMEM_INVALID_SIZE', `size ${size} is larger than the memory object (${available} bytes)`);
    return;
  }
  if (size < MIN_BAR2_SIZE)
    fail(
      'ERR_IVSHMEM_INVALID_SIZE',
      `size ${size} is below ${MIN_BAR2_SIZE} bytes, the smallest a PCI memory BAR can be`,
    );
  if (!isPowerOfTwo(size)) fail('ERR_IVSHMEM_INVALID_SIZE', `size ${size} is not a power of two (PCI BARs must be)`);
  if (size >= MAX_MAPPING) fail('ERR_IVSHMEM_INVALID_SIZE', `size ${size} is beyond the address space (2^47 bytes)`);
  if (size > available) {
    fail('ERR_IVSHMEM_INVALID_SIZE', `size ${size} is larger than the memory object (${available} bytes)`);
  }
  if (!use64 && size > MAX_BAR32_SIZE)
    fail('ERR_IVSHMEM_INVALID_SIZE', `size ${size} does not fit a 32-bit BAR (at most 2 GiB)`);
}
