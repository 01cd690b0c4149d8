// Instantiates the WebAssembly core (assembly/ compiled with asc) once per device and adapts its
// exports to DeviceCore: u32 results made unsigned, and the signal view kept pointing at live
// memory when the route table grows.
import releaseWasm from '../../out/wasm/core.release.wasm';
import type { CoreHost, DeviceCore } from './abi.js';
import { SIGNAL_SLOTS } from './abi.js';
import { IvshmemError } from '../errors.js';

// The raw exports: DeviceCore's functions (with u32 results still signed), plus the memory.
type CoreExports = Omit<DeviceCore, 'kind' | 'signals'> & {
  memory: WebAssembly.Memory;
  signalsPointer(): number;
  nop(): void;
  nopWrite(offset: number, value: number): number;
};

let releaseModule: WebAssembly.Module | undefined;

/** Compiles core bytes; the embedded release build is compiled once per process. */
export function compileCore(bytes?: BufferSource): WebAssembly.Module {
  if (bytes !== undefined) return new WebAssembly.Module(bytes);
  releaseModule ??= new WebAssembly.Module(releaseWasm);
  return releaseModule;
}

function readAsString(memory: WebAssembly.Memory, ptr: number): string {
  if (ptr === 0) return '';
  const bytes = new Uint32Array(memory.buffer, ptr - 4, 1)[0];
  return String.fromCharCode(...new Uint16Array(memory.buffer, ptr, bytes >>> 1));
}

export class WasmCore implements DeviceCore {
  readonly kind = 'wasm' as const;
  signals: Int32Array;
  readonly #x: CoreExports;

  // Direct references to exports whose results need no conversion: no wrapper on the hot path.
  readonly mmioWrite: CoreExports['mmioWrite'];
  readonly write32: CoreExports['write32'];
  readonly doorbell: CoreExports['doorbell'];
  readonly vectorFired: CoreExports['vectorFired'];
  readonly vectorDeliverable: CoreExports['vectorDeliverable'];
  readonly setControl: CoreExports['setControl'];
  readonly reset: CoreExports['reset'];
  readonly setPosition: CoreExports['setPosition'];
  readonly removePeer: CoreExports['removePeer'];
  readonly peerVectors: CoreExports['peerVectors'];
  readonly intxAsserted: CoreExports['intxAsserted'];
  readonly counterValue: CoreExports['counterValue'];
  readonly routeDoorbells: CoreExports['routeDoorbells'];
  readonly vectorCounter: CoreExports['vectorCounter'];
  readonly stateWords: CoreExports['stateWords'];
  readonly stateWrite: CoreExports['stateWrite'];
  readonly stateCommit: CoreExports['stateCommit'];
  readonly msixBarSize: CoreExports['msixBarSize'];
  readonly msixPbaOffset: CoreExports['msixPbaOffset'];
  readonly enableStateTable: CoreExports['enableStateTable'];
  /** A call into this instance that does nothing: the baseline a dispatch is measured against. */
  readonly nop: () => void;
  /** The same with write32's signature (two numbers in, one out). */
  readonly nopWrite: (offset: number, value: number) => number;

  constructor(host: CoreHost, module: WebAssembly.Module = compileCore()) {
    let memory: WebAssembly.Memory | undefined;
    const imports = {
      env: {
        sendMsi: (lo: number, hi: number, data: number, vector: number) =>
          host.sendMsi(lo >>> 0, hi >>> 0, data >>> 0, vector >>> 0),
        setIrqLevel: (level: number) => host.setIrqLevel(level),
        statePublished: (value: number) => host.statePublished?.(value >>> 0),
        abort: (msg: number, file: number, line: number, column: number) => {
          const text = memory ? `${readAsString(memory, msg)} (${readAsString(memory, file)}:${line}:${column})` : '';
          throw new IvshmemError('ERR_IVSHMEM_CORE', `ivshmem core aborted: ${text}`);
        },
      },
    };
    const x = new WebAssembly.Instance(module, imports).exports as unknown as CoreExports;
    memory = x.memory;
    this.#x = x;
    this.mmioWrite = x.mmioWrite;
    this.write32 = x.write32;
    this.doorbell = x.doorbell;
    this.vectorFired = x.vectorFired;
    this.vectorDeliverable = x.vectorDeliverable;
    this.setControl = x.setControl;
    this.reset = x.reset;
    this.setPosition = x.setPosition;
    this.removePeer = x.removePeer;
    this.peerVectors = x.peerVectors;
    this.intxAsserted = x.intxAsserted;
    this.counterValue = x.counterValue;
    this.routeDoorbells = x.routeDoorbells;
    this.vectorCounter = x.vectorCounter;
    this.stateWords = x.stateWords;
    this.stateWrite = x.stateWrite;
    this.stateCommit = x.stateCommit;
    this.msixBarSize = x.msixBarSize;
    this.msixPbaOffset = x.msixPbaOffset;
    this.enableStateTable = x.enableStateTable;
    this.nop = x.nop;
    this.nopWrite = x.nopWrite;
    this.signals = this.#view();
  }

  #view(): Int32Array {
    return new Int32Array(this.#x.memory.buffer, this.#x.signalsPointer(), SIGNAL_SLOTS);
  }

  // Growing linear memory detaches old views; only init and addRoute allocate.
  #refresh(): void {
    if (this.signals.buffer !== this.#x.memory.buffer) this.signals = this.#view();
  }

  init(mode: number, vectors: number, position: number): number {
    const r = this.#x.init(mode, vectors, position);
    this.#refresh();
    return r;
  }

  addRoute(peer: number, handle: number): number {
    const r = this.#x.addRoute(peer, handle);
    this.#refresh();
    return r;
  }

  mmioRead(bar: number, offset: number, size: number): number {
    return this.#x.mmioRead(bar, offset, size) >>> 0;
  }

  read32(offset: number): number {
    return this.#x.read32(offset) >>> 0;
  }

  readHigh(): number {
    return this.#x.readHigh() >>> 0;
  }

  getControl(): number {
    return this.#x.getControl() >>> 0;
  }

  stateRead(index: number): number {
    return this.#x.stateRead(index) >>> 0;
  }

  /** Bytes of linear memory in use: grows with the peers present, not with the id space. */
  memoryBytes(): number {
    return this.#x.memory.buffer.byteLength;
  }
}
