// Public entry point of ivshmem-ts.
export { IvshmemDevice } from './device.js';
export type { DeviceCounters, SharedMemoryInfo } from './device.js';
export type { IvshmemDeviceOptions, MasterOption } from './options.js';
export type { VmmTransport, DoorbellSink, BarAddress } from './transport.js';
export type { BarInfo, DeviceMode } from './pci/ivshmem-function.js';
export { IvshmemError } from './errors.js';
export type { IvshmemErrorCode } from './errors.js';
export { createCore } from './core/create-core.js';
export type { CoreHost, DeviceCore } from './core/abi.js';
export * as coreAbi from './core/abi.js';
export { STATE_VERSION } from './state.js';
