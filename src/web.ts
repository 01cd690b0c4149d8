// Entry point of ivshmem-ts/web: what a browser page and its Web Workers need, and nothing that
// imports Node's I/O or the native addon. Peers meet in a PeerDirectory (on the page), each
// worker's WebDevice joins it over a MessagePort, and doorbells are Atomics on SharedArrayBuffers
// (the page must be cross-origin isolated for those). dist/web.js is this file bundled for the
// browser, the WebAssembly core embedded. V86Transport puts a WebDevice into a v86 machine running
// in a worker.
export { WebDevice } from './device/web-device.js';
export type { WebDeviceOptions } from './device/web-device.js';
export type { DeviceCounters, SharedMemoryInfo, VectorCounters } from './device/model.js';
export type { MasterOption } from './device/options.js';
export type { VmmTransport, DoorbellSink, BarAddress, MsiMessage } from './device/transport.js';
export type { BarInfo, DeviceMode } from './device/pci/ivshmem-function.js';
export { STATE_VERSION } from './device/persist.js';
export { IvshmemError } from './errors.js';
export type { IvshmemErrorCode } from './errors.js';
export { createCore } from './core/create-core.js';
export type { CoreHost, DeviceCore } from './core/abi.js';
export * as coreAbi from './core/abi.js';
export { PeerDirectory } from './server/directory.js';
export type { PeerDirectoryOptions } from './server/directory.js';
export { DirectoryConnection } from './protocol/directory-connection.js';
export type { DirectoryConnectOptions } from './protocol/directory-connection.js';
export { DIRECTORY_VERSION } from './protocol/directory-messages.js';
export type { DirectoryMessage, PortLike } from './protocol/directory-messages.js';
export { Signals, SignalDoorbell, SignalWatcher, signalBytes } from './os/signals.js';
export { V86Transport } from './monitors/v86/v86-transport.js';
export type { V86TransportOptions, V86Emulator } from './monitors/v86/v86-transport.js';
