// DeviceModel: the ivshmem device as its guest sees it, without any I/O of its own. It joins the
// bus side (the PCI function of pci/, or ivshmem-flat's fixed window of flat/), the
// register/interrupt/doorbell core (WebAssembly, or its TypeScript twin), the shared memory's bytes
// and the monitor's transport, and answers every guest access, interrupt and route change. IvshmemDevice (device.ts) adds what needs the OS: creating the
// device on shared memory or a server, handing it over, closing what it opened.
import {
  FLAT_REGS_SIZE,
  FLAT_REGS_SIZE_WITH_STATE,
  MODE_DOORBELL,
  MODE_FLAT,
  REG_DOORBELL,
  MODE_INTX,
  MODE_PLAIN,
  ROUTE_BAD_HANDLE,
  ROUTE_BAD_PEER,
  ROUTE_FULL,
} from '../core/abi.js';
import type { CoreHost, DeviceCore } from '../core/abi.js';
import { createCore } from '../core/create-core.js';
import { EventEmitter } from 'node:events';
import { argumentError, describeValue, IvshmemError } from '../errors.js';
import { publishDeviceError } from './events.js';
import type { BusFunction } from './bus-function.js';
import { FlatWindow } from './flat/flat-window.js';
import { IvshmemFunction } from './pci/ivshmem-function.js';
import type { BarInfo, DeviceMode } from './pci/ivshmem-function.js';
import { PCI_CONFIG_SPACE_SIZE } from './pci/registers.js';
import { checkStateFits, decodeState, encodeState } from './persist.js';
import { readCounters, readVectorCounters } from './metrics.js';
import type { DeviceCounters, VectorCounters } from './metrics.js';

export type { DeviceCounters, VectorCounters } from './metrics.js';
import { RouteHooks } from './route-hooks.js';
import { DevicePeerState } from './peer-state.js';
import type { StateTableDeviceOption } from './peer-state.js';
import type { BarAddress, DoorbellSink, VmmTransport } from './transport.js';

const MODE_NUMBER: Record<DeviceMode, number> = {
  plain: MODE_PLAIN,
  doorbell: MODE_DOORBELL,
  intx: MODE_INTX,
  flat: MODE_FLAT,
};
const TWO_32 = 2 ** 32;

/** What the model needs to know, resolved and checked (options.ts does that). */
export interface ModelOptions {
  mode: DeviceMode;
  vectors: number;
  id: number;
  master: boolean;
  vectorWait: 'loop' | 'manual';
  memory: ArrayBuffer | SharedArrayBuffer | undefined;
  size: number | undefined;
  use64: boolean;
  transport: VmmTransport;
  doorbell: DoorbellSink | undefined;
  core: 'wasm' | 'ts';
  wasmModule: WebAssembly.Module | undefined;
  /** The server's socket, named in the error events a device publishes. */
  server: string | undefined;
  /** flat mode: where the register window and the shared memory are (checked by options.ts). */
  registersAddress: bigint | undefined;
  memoryAddress: bigint | undefined;
  /** Take part in the server's peer state table (opt-in). */
  stateTable: StateTableDeviceOption | undefined;
  /** The Subsystem ID a guest reads to tell regions apart (PCI modes; QEMU's 0x1100 by default). */
  subsystemId: number | undefined;
}

/** What the server link tells the device; each call changes the core's routes and the transport's hooks together. */
export interface LinkTarget {
  /** The server announced vector `vector` of `peer` on eventfd `fd` (vectors arrive in order). */
  peerVector(peer: number, vector: number, fd: number): void;
  /** `peer` left; its eventfds are closed after this returns. */
  peerLeft(peer: number): void;
  /** One of our own vectors, on eventfd `fd`. */
  ownVector(vector: number, fd: number): void;
  /** Our own vector was signalled (only while the link watches them). */
  fireVector(vector: number): void;
  /** Every fd the connection received is about to be closed, or passed on to another process. */
  releasing(why: 'close' | 'handover'): void;
}

export interface SharedMemoryInfo {
  /** BAR2's bytes: a MAP_SHARED mapping for real shared memory. */
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
  readonly size: number;
  /** The shared memory object's fd (owned by the device), or -1 for ArrayBuffer memory. */
  readonly fd: number;
}

/**
 * The device as the guest sees it. It emits 'error' (an IvshmemError, code ERR_IVSHMEM_TRANSPORT,
 * with the transport's exception as its cause) when the VMM's transport throws while the device
 * delivers an interrupt or calls a hook; see #transportFailed.
 */
export class DeviceModel extends EventEmitter {
  readonly mode: DeviceMode;
  readonly vectors: number;
  /** IVPosition: this device's peer id (0 for plain). */
  readonly id: number;
  /** Whether this device owns the shared memory for migration (QEMU's `master`). */
  readonly master: boolean;
  /** Why saveState/loadState are refused, as QEMU's migration blocker; null when allowed. */
  readonly migrationBlocker: string | null;
  readonly bars: readonly BarInfo[];
  readonly sharedMemory: SharedMemoryInfo;
  /** Who waits on our own vectors' eventfds: the event loop, or the embedder ('manual'). */
  readonly vectorWait: 'loop' | 'manual';

  readonly #core: DeviceCore;
  readonly #function: BusFunction;
  readonly #transport: VmmTransport;
  readonly #bar2: DataView;
  readonly #options: ModelOptions;
  readonly #size: number;
  readonly #hooks: RouteHooks;
  #glueInvalid = 0;
  #mapped: BarAddress[] = [null, null, null];
  #transportErrors = 0;
  #transportWarned = false;
  #peerState: DevicePeerState | undefined;
  // A State write the core reported, published once the core's call has returned.
  #statePending = false;
  #stateValue = 0;

  // The one door for what the server says (the link calls these): each change reaches the core
  // and the transport's fast-path hooks together.
  /** kernelRoutes: the route handles are eventfds, which the transport's fast-path hooks may take. */
  protected linkTarget(kernelRoutes = true): LinkTarget {
    return {
      peerVector: (peer, vector, fd) => {
        this.connectPeerVector(peer, fd);
        if (kernelRoutes) this.#hooks.peerVector(peer, vector, fd);
      },
      peerLeft: (peer) => {
        this.#hooks.peerLeft(peer);
        this.disconnectPeer(peer);
      },
      ownVector: (vector, fd) => {
        this.connectPeerVector(this.id, fd); // a doorbell to ourselves rings our own vector, as in QEMU
        if (!kernelRoutes) return;
        this.#hooks.peerVector(this.id, vector, fd);
        this.#hooks.ownVector(vector, fd);
      },
      fireVector: (vector) => this.fireVector(vector),
      releasing: (why) =>
        this.releaseGuest(
          why === 'handover'
            ? 'the device was handed over to another process'
            : "the device's connection to its server or directory was closed",
        ),
    };
  }

  // The connection is about to close its fds or pass them on: nothing of the monitor's may stay
  // registered on them, and the guest loses the device (every BAR unmapped, accesses refused).
  protected releaseGuest(why: string): void {
    this.retire(why);
    this.#hooks.release();
    for (const bar of this.bars) {
      if (this.#mapped[bar.index] === null) continue;
      this.#mapped[bar.index] = null;
      try {
        this.#transport.barMapped?.(bar.index, null);
      } catch (err) {
        this.#transportFailed('barMapped', err);
      }
    }
  }

  /** `sharedFd`: the shared memory object's fd when the device owns one (else -1). */
  protected constructor(o: ModelOptions, sharedFd: number) {
    super();
    this.#options = o;
    this.#size = o.size!;
    this.mode = o.mode;
    this.vectors = o.vectors;
    this.id = o.id;
    this.master = o.master;
    this.vectorWait = o.vectorWait;
    this.migrationBlocker = o.master
      ? null
      : "Migration is disabled when using feature 'peer mode' in device 'ivshmem' (set master: 'on')";
    this.#transport = o.transport;
    const transport = o.transport;
    // The core never sees a transport's exception: it would unwind through the core's state
    // change half done, or out of an event-loop callback and end the process.
    const host: CoreHost = {
      sendMsi: (lo, hi, data, vector) => {
        try {
          transport.sendMsi(hi * TWO_32 + lo, data, vector);
        } catch (err) {
          this.#transportFailed('sendMsi', err);
        }
      },
      setIrqLevel: (level) => {
        try {
          transport.setIrqLevel(level ? 1 : 0);
        } catch (err) {
          this.#transportFailed('setIrqLevel', err);
        }
      },
      statePublished: (value) => {
        this.#statePending = true;
        this.#stateValue = value;
      },
    };
    this.#core = createCore(host, { kind: o.core, wasm: o.wasmModule });
    this.#hooks = new RouteHooks(transport, this.#core, o.vectorWait === 'manual', (call, err) =>
      this.#transportFailed(call, err),
    );
    if (this.#core.init(MODE_NUMBER[o.mode], o.vectors, o.id) !== 0) {
      throw new IvshmemError(
        'ERR_IVSHMEM_INVALID_VECTORS',
        `the core refused mode ${o.mode} with ${o.vectors} vectors`,
      );
    }
    this.#function =
      o.mode === 'flat'
        ? new FlatWindow({
            registers: o.registersAddress!,
            memory: o.memoryAddress!,
            memorySize: this.#size,
            // the state registers take 0x10..0x1b
            registersSize: o.stateTable === undefined ? FLAT_REGS_SIZE : FLAT_REGS_SIZE_WITH_STATE,
          })
        : new IvshmemFunction({
            mode: o.mode,
            vectors: o.vectors,
            bar2Size: this.#size,
            use64: o.use64,
            msixBarSize: this.#core.msixBarSize(),
            msixPbaOffset: this.#core.msixPbaOffset(),
            subsystemId: o.subsystemId,
          });
    this.bars = this.#function.bars;
    this.sharedMemory = { buffer: o.memory!, size: this.#size, fd: sharedFd };
    this.#bar2 = new DataView(o.memory!, 0, this.#size);
    if (o.stateTable !== undefined) {
      this.#peerState = new DevicePeerState(o.memory!, this.#size, o.id, o.stateTable);
      this.#core.enableStateTable(this.#peerState.table.offset, this.#peerState.slot);
    }
    // A flat device's regions are where the monitor put them from the start: it hears so at once.
    if (o.mode === 'flat') this.#updateMappings();
  }

  // Interrupts are delivered from guest accesses and from the event loop (a peer's doorbell), so
  // a throw has no caller that could handle it. The interrupt counts as delivered (the device did
  // its part); the failure is counted, emitted as 'error' to a listener, published on the
  // ivshmem:device:error channel, and, with nobody listening, warned about once.
  #transportFailed(call: string, cause: unknown): void {
    this.#transportErrors++;
    const err = new IvshmemError(
      'ERR_IVSHMEM_TRANSPORT',
      `the VMM transport's ${call}() threw: ${(cause as Error)?.message ?? String(cause)}`,
      { cause },
    );
    publishDeviceError({ socketPath: this.#options.server ?? '', id: this.id, code: err.code, message: err.message });
    if (this.listenerCount('error') > 0) this.emit('error', err);
    else if (!this.#transportWarned) {
      this.#transportWarned = true;
      process.emitWarning(
        `${err.message} (listen for the device's 'error' event to handle this; counters().transportErrors counts them)`,
        { code: err.code },
      );
    }
  }

  /** Which core runs this device. */
  get coreKind(): 'wasm' | 'ts' {
    return this.#core.kind;
  }

  #retired: string | undefined = undefined;

  /** Guest accesses and route changes are refused from now on with `why` (the first reason given stays). */
  protected retire(why: string): void {
    this.#retired ??= why;
  }

  protected checkLive(): void {
    if (this.#retired !== undefined) throw new IvshmemError('ERR_IVSHMEM_CLOSED', this.#retired);
  }

  /** True once the device let go of its guest: closed, handed over, or its server connection closed. */
  get released(): boolean {
    return this.#retired !== undefined;
  }

  // ---- configuration space ----

  /** A config read of 1, 2 or 4 bytes; anything else reads as 0 and is counted as invalid. */
  configRead(offset: number, size: number): number {
    this.checkLive();
    if (!this.#configAccessValid(offset, size)) return 0;
    return this.#function.read(offset, size, this.#core.intxAsserted() !== 0);
  }

  configWrite(offset: number, size: number, value: number): void {
    this.checkLive();
    if (typeof value !== 'number') throw valueTypeError('configWrite', 'a number', value);
    if (!this.#configAccessValid(offset, size)) return;
    this.#function.write(offset, size, Number(value) >>> 0);
    this.#configChanged();
  }

  // A flat device has no configuration space: every access is one that hits nothing.
  #configAccessValid(offset: number, size: number): boolean {
    const ok =
      this.#function.hasConfigSpace &&
      (size === 1 || size === 2 || size === 4) &&
      Number.isInteger(offset) &&
      offset >= 0 &&
      offset + size <= PCI_CONFIG_SPACE_SIZE;
    if (!ok) this.#glueInvalid++;
    return ok;
  }

  #configChanged(): void {
    const flags = this.#function.controlFlags();
    if (flags !== this.#core.getControl()) {
      this.#core.setControl(flags);
      this.#hooks.msixChanged();
    }
    this.#updateMappings();
  }

  #updateMappings(): void {
    for (const bar of this.bars) {
      const address = this.#function.barAddress(bar.index);
      if (address !== this.#mapped[bar.index]) {
        this.#mapped[bar.index] = address;
        this.#transport.barMapped?.(bar.index, address);
      }
    }
  }

  /** Where the guest placed a BAR, or null while it does not decode. */
  barAddress(bar: number): BarAddress {
    return this.#mapped[bar] ?? null;
  }

  // ---- BAR accesses ----

  /**
   * A guest read of `size` bytes (1..8) at `offset` of BAR `bar`, with QEMU's results for every
   * size and alignment. 8-byte reads return a bigint; the rest return numbers.
   */
  mmioRead(bar: number, offset: number, size: 1 | 2 | 4): number;
  mmioRead(bar: number, offset: number, size: 8): bigint;
  mmioRead(bar: number, offset: number, size: number): number | bigint;
  mmioRead(bar: number, offset: number, size: number): number | bigint {
    this.checkLive();
    if (bar === 0 && size === 4 && offset >>> 0 === offset) return this.#core.read32(offset);
    if (bar === 2) return this.#bar2Read(offset, size);
    if (!this.#coreArgsValid(bar, offset, size)) return size === 8 ? 0n : 0;
    const lo = this.#core.mmioRead(bar, offset, size);
    return size === 8 ? (BigInt(this.#core.readHigh()) << 32n) | BigInt(lo) : lo;
  }

  /** A guest write; a doorbell write rings the peer's route through the doorbell sink. */
  mmioWrite(bar: number, offset: number, size: number, value: number | bigint): void {
    this.checkLive();
    if (bar === 2) {
      this.#bar2Write(offset, size, value);
      return;
    }
    if (!this.#coreArgsValid(bar, offset, size)) {
      checkWriteValue(value);
      return;
    }
    let n: number;
    if (bar === 0 && size === 4 && typeof value === 'number') {
      if (offset === REG_DOORBELL) {
        // The write a guest makes most: one argument in, the handle out.
        const handle = this.#core.doorbell(value);
        if (handle >= 0) this.#options.doorbell?.ring(handle);
        return;
      }
      n = this.#core.write32(offset, value);
    } else if (typeof value === 'number') {
      n = this.#core.mmioWrite(bar, offset, size, value, size > 4 ? Math.floor(value / TWO_32) : 0);
    } else if (typeof value === 'bigint') {
      n = this.#core.mmioWrite(
        bar,
        offset,
        size,
        Number(BigInt.asUintN(32, value)),
        Number(BigInt.asUintN(32, value >> 32n)),
      );
    } else {
      checkWriteValue(value);
      return;
    }
    if (n !== 0) this.#ring(n);
    if (bar === 1) this.#hooks.msixChanged(); // the MSI-X table
    if (this.#statePending) this.#publishState();
  }

  // The guest wrote State: its entry changes, and every other listening peer is rung (through the
  // core, so each ring is routed, bounded and counted as a doorbell like any other).
  #publishState(): void {
    this.#statePending = false;
    const sink = this.#options.doorbell;
    for (const value of this.#peerState!.publish(this.#stateValue, this.vectors)) {
      const handle = this.#core.doorbell(value);
      if (handle >= 0) sink?.ring(handle);
    }
  }

  /** The peer state table this device takes part in (stateTable option), or undefined. */
  get peerStateTable(): DevicePeerState['table'] | undefined {
    return this.#peerState?.table;
  }

  // The core takes u32 arguments: a fraction or a number past 2^32 would be truncated onto a
  // register (offset 2^32 + 0x0c would ring the doorbell), so such an access hits nothing.
  #coreArgsValid(bar: number, offset: number, size: number): boolean {
    const ok = bar >>> 0 === bar && offset >>> 0 === offset && size >>> 0 === size;
    if (!ok) this.#glueInvalid++;
    return ok;
  }

  #ring(n: number): void {
    const signals = this.#core.signals;
    const sink = this.#options.doorbell;
    if (sink === undefined) return; // no routes can exist without a sink (connectPeerVector)
    for (let i = 0; i < n; i++) sink.ring(signals[i]);
  }

  #bar2Valid(offset: number, size: number): boolean {
    return size >= 1 && size <= 8 && Number.isInteger(offset) && offset >= 0 && offset + size <= this.#size;
  }

  // BAR2 is RAM: any size and alignment, little-endian; for monitors that do not map it.
  #bar2Read(offset: number, size: number): number | bigint {
    if (!this.#bar2Valid(offset, size)) {
      this.#glueInvalid++;
      return size === 8 ? 0n : 0;
    }
    let value = 0n;
    for (let i = size - 1; i >= 0; i--) value = (value << 8n) | BigInt(this.#bar2.getUint8(offset + i));
    return size === 8 ? value : Number(value);
  }

  #bar2Write(offset: number, size: number, value: number | bigint): void {
    checkWriteValue(value);
    if (!this.#bar2Valid(offset, size)) {
      this.#glueInvalid++;
      return;
    }
    let v = BigInt.asUintN(64, typeof value === 'bigint' ? value : BigInt(Math.trunc(value)));
    for (let i = 0; i < size; i++, v >>= 8n) this.#bar2.setUint8(offset + i, Number(v & 0xffn));
  }

  // ---- peers and interrupts (driven by the server connection, or by hand) ----

  /**
   * Connects the next vector of `peer` to route `handle` (what the doorbell sink will ring);
   * returns its vector index. Vectors arrive in order, as the server announces them.
   */
  connectPeerVector(peer: number, handle: number): number {
    this.checkLive();
    if (this.#options.doorbell === undefined) {
      throw new IvshmemError('ERR_IVSHMEM_INVALID_OPTION', 'no doorbell sink: pass options.doorbell to connect routes');
    }
    if (!Number.isInteger(handle) || handle < 0 || handle > 0x7fffffff) {
      throw new IvshmemError('ERR_IVSHMEM_INVALID_OPTION', `route handle ${handle} must be an integer 0..2^31-1`);
    }
    const r = Number.isInteger(peer) ? this.#core.addRoute(peer, handle) : ROUTE_BAD_PEER;
    if (r === ROUTE_FULL) {
      throw new IvshmemError(
        'ERR_IVSHMEM_TOO_MANY_VECTORS',
        `Too many eventfd received, device has ${this.vectors} vectors (peer ${peer})`,
      );
    }
    if (r === ROUTE_BAD_PEER || r === ROUTE_BAD_HANDLE) {
      throw new IvshmemError('ERR_IVSHMEM_INVALID_PEER', `peer id ${peer} is out of range 0..65535`);
    }
    return r;
  }

  /** Forgets a peer's routes; returns how many vectors it had. */
  disconnectPeer(peer: number): number {
    this.checkLive();
    const n = Number.isInteger(peer) ? this.#core.removePeer(peer) : -1;
    if (n < 0) throw new IvshmemError('ERR_IVSHMEM_INVALID_PEER', `invalid peer ${peer}: it is not connected`);
    return n;
  }

  /** How many vectors of `peer` are connected. */
  peerVectors(peer: number): number {
    this.checkLive();
    return this.#core.peerVectors(peer);
  }

  /** One of this device's own vectors was signalled: MSI-X or INTx delivery follows. */
  fireVector(vector: number): void {
    this.checkLive();
    this.#core.vectorFired(vector);
  }

  /**
   * Doorbells this device rang through each of `peer`'s vectors since the peer joined (index =
   * vector). Rings a monitor's ioeventfds carry in the kernel never reach the device: not counted.
   */
  peerDoorbells(peer: number): number[] {
    this.checkLive();
    const out: number[] = [];
    if (!Number.isInteger(peer)) return out;
    for (let v = 0, n = this.#core.peerVectors(peer); v < n; v++) out.push(this.#core.routeDoorbells(peer, v));
    return out;
  }

  /** Per own vector (index = vector): signals in, and what became of them (not those KVM delivers as irqfds). */
  vectorCounters(): VectorCounters[] {
    this.checkLive();
    return readVectorCounters(this.#core, this.vectors);
  }

  counters(): DeviceCounters {
    return readCounters(this.#core, { glueInvalid: this.#glueInvalid, transportErrors: this.#transportErrors });
  }

  // ---- lifecycle ----

  /** System reset: registers and MSI-X cleared, command register cleared; peers, id and memory kept. */
  reset(): void {
    this.checkLive();
    this.#function.reset();
    this.#core.reset();
    this.#hooks.msixChanged();
    this.#updateMappings();
  }

  /**
   * The device's state (registers, config space, MSI-X table and PBA) as bytes. With
   * `{ memory: true }` it also carries BAR2's contents, as a master's migration carries its RAM.
   * Refused (ERR_IVSHMEM_MIGRATION_BLOCKED) for a non-master, as QEMU's migration blocker.
   */
  saveState(options: { memory?: boolean } = {}): Uint8Array {
    this.checkLive();
    this.#migratable();
    return this.encodeState(options.memory === true);
  }

  protected encodeState(memory: boolean): Uint8Array {
    const words = new Uint32Array(this.#core.stateWords());
    for (let i = 0; i < words.length; i++) words[i] = this.#core.stateRead(i);
    return encodeState({
      mode: MODE_NUMBER[this.mode],
      use64: this.#options.use64,
      vectors: this.vectors,
      bar2Size: this.#size,
      config: this.#function.snapshot(),
      words,
      memory: memory ? new Uint8Array(this.sharedMemory.buffer, 0, this.#size) : undefined,
    });
  }

  /**
   * Loads a saved state; refuses foreign, newer or mismatched input without changing anything.
   * A state with memory overwrites BAR2. IVPosition stays this device's own id (the server gave
   * it; QEMU does not migrate it either).
   */
  loadState(bytes: Uint8Array): void {
    this.checkLive();
    this.#migratable();
    this.decodeState(bytes);
  }

  protected decodeState(bytes: Uint8Array): void {
    const s = decodeState(bytes);
    checkStateFits(s, {
      mode: MODE_NUMBER[this.mode],
      vectors: this.vectors,
      bar2Size: this.#size,
      use64: this.#options.use64,
      coreWords: this.#core.stateWords(),
      msix: this.mode === 'doorbell',
    });
    const at = this.#function.readOnlyMismatch(s.config);
    if (at >= 0) {
      throw new IvshmemError(
        'ERR_IVSHMEM_STATE_MISMATCH',
        `config byte 0x${at.toString(16)} is read-only and differs (0x${s.config[at].toString(16)} in the state)`,
      );
    }
    // The control word is derived from config space; disagreement means a damaged state.
    const previous = this.#function.snapshot();
    this.#function.restore(s.config);
    const flags = this.#function.controlFlags();
    if (s.words[2] !== flags) {
      this.#function.restore(previous);
      throw new IvshmemError('ERR_IVSHMEM_STATE_CORRUPT', 'state control word disagrees with its config space');
    }
    s.words.forEach((w, i) => this.#core.stateWrite(i, w));
    if (s.memory !== undefined) new Uint8Array(this.sharedMemory.buffer, 0, this.#size).set(s.memory);
    this.#core.stateCommit();
    this.#hooks.msixChanged();
    this.#updateMappings();
  }

  #migratable(): void {
    if (this.migrationBlocker !== null) throw new IvshmemError('ERR_IVSHMEM_MIGRATION_BLOCKED', this.migrationBlocker);
  }
}

function valueTypeError(method: string, wants: string, value: unknown): TypeError {
  return argumentError(
    TypeError,
    'ERR_INVALID_ARG_TYPE',
    `${method}: the value must be ${wants}, got ${describeValue(value)}`,
  );
}

// The guest's access is defined for any address; a value that is no number is the VMM's bug.
// Checked off the doorbell's path, which has tested for a number already.
function checkWriteValue(value: unknown): void {
  if (typeof value !== 'number' && typeof value !== 'bigint')
    throw valueTypeError('mmioWrite', 'a number or a bigint', value);
}
