// The device core on its own, for users who drive registers and doorbells without the PCI
// function: the WebAssembly core, or its TypeScript twin, behind one interface.
import type { CoreHost, DeviceCore } from './abi.js';
import { TsCore } from './ts-core.js';
import { WasmCore, compileCore } from './wasm-core.js';

export interface CreateCoreOptions {
  kind?: 'wasm' | 'ts';
  /** WebAssembly bytes or module to use instead of the embedded release build. */
  wasm?: BufferSource | WebAssembly.Module;
}

/** Returns an uninitialised core; call init(mode, vectors, position) before use. */
export function createCore(host: CoreHost, options: CreateCoreOptions = {}): DeviceCore {
  if (options.kind === 'ts') return new TsCore(host);
  const { wasm } = options;
  const module = wasm instanceof WebAssembly.Module ? wasm : compileCore(wasm);
  return new WasmCore(host, module);
}
