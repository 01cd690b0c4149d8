// Builds devices whose transport and doorbell sink record everything, for each core variant:
// the release WebAssembly build, the debug build (with assertions), and the TypeScript twin.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { IvshmemDevice } from '../../src/device/device.js';
import type { IvshmemDeviceOptions } from '../../src/device/options.js';

export type CoreVariant = 'wasm-release' | 'wasm-debug' | 'ts';
export const CORE_VARIANTS: CoreVariant[] = ['wasm-release', 'wasm-debug', 'ts'];

let debugModule: WebAssembly.Module | undefined;
export function debugWasm(): WebAssembly.Module {
  debugModule ??= new WebAssembly.Module(
    readFileSync(fileURLToPath(new URL('../../out/wasm/core.debug.wasm', import.meta.url))),
  );
  return debugModule;
}

export interface Recorded {
  irq: number[];
  msi: { address: number; data: number; vector: number }[];
  rings: number[];
  mapped: { bar: number; address: bigint | null }[];
}

export interface TestDevice {
  device: IvshmemDevice;
  log: Recorded;
}

type Options = Omit<IvshmemDeviceOptions, 'transport' | 'memory' | 'core' | 'wasmModule'> & { memory?: ArrayBuffer };

export function coreOptions(variant: CoreVariant): Pick<IvshmemDeviceOptions, 'core' | 'wasmModule'> {
  if (variant === 'ts') return { core: 'ts' };
  if (variant === 'wasm-debug') return { core: 'wasm', wasmModule: debugWasm() };
  return { core: 'wasm' };
}

export async function makeDevice(variant: CoreVariant, options: Options = {}): Promise<TestDevice> {
  const log: Recorded = { irq: [], msi: [], rings: [], mapped: [] };
  const device = await IvshmemDevice.create({
    memory: options.memory ?? new ArrayBuffer(options.size ?? 4096),
    ...options,
    ...coreOptions(variant),
    transport: {
      setIrqLevel: (level) => log.irq.push(level),
      sendMsi: (address, data, vector) => log.msi.push({ address, data, vector }),
      barMapped: (bar, address) => log.mapped.push({ bar, address }),
    },
    doorbell: { ring: (handle) => log.rings.push(handle) },
  });
  return { device, log };
}

/** Enables memory decoding and bus mastering, and MSI-X with the given Message Control bits. */
export function enableMsix(device: IvshmemDevice, maskAll = false): void {
  device.configWrite(0x04, 2, 0x0006);
  device.configWrite(0x42, 2, 0x8000 | (maskAll ? 0x4000 : 0));
}

/** Programs MSI-X table entry `v` (address, data) and sets its mask bit as given. */
export function programVector(device: IvshmemDevice, v: number, address: number, data: number, masked: boolean): void {
  device.mmioWrite(1, v * 16, 4, address);
  device.mmioWrite(1, v * 16 + 4, 4, 0);
  device.mmioWrite(1, v * 16 + 8, 4, data);
  device.mmioWrite(1, v * 16 + 12, 4, masked ? 1 : 0);
}
