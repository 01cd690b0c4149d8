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
export { EventFd, eventfdDoorbell } from './native/eventfd.js';
export { SharedMemory, MAX_MAPPING } from './native/shared-memory.js';
export type { SharedMemorySource, OpenOptions, CreateOptions } from './native/shared-memory.js';
export { UnixSocket, UnixListener, MESSAGE_BYTES } from './native/unix-socket.js';
export type { Message } from './native/unix-socket.js';
export { createWaiter } from './native/waiter.js';
export type { EventfdWaiter, WaitKind, OnReady, WaiterOptions } from './native/waiter.js';
