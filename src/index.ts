// Public entry point of ivshmem-ts.
export { IvshmemDevice } from './device/device.js';
export type { DeviceCounters, SharedMemoryInfo, VectorCounters } from './device/device.js';
export type { DeviceHandover, IvshmemDeviceOptions, MasterOption } from './device/options.js';
export type { VmmTransport, DoorbellSink, BarAddress, IoEventFd, MsiMessage } from './device/transport.js';
export type { BarInfo, DeviceMode } from './device/pci/ivshmem-function.js';
export { IvshmemError } from './errors.js';
export type { IvshmemErrorCode } from './errors.js';
export { createCore } from './core/create-core.js';
export type { CoreHost, DeviceCore } from './core/abi.js';
export * as coreAbi from './core/abi.js';
export { STATE_VERSION } from './device/persist.js';
export { EventFd, eventfdDoorbell } from './os/eventfd.js';
export { fastCallStatus } from './os/fast-binding.js';
export { SharedMemory, MAX_MAPPING } from './os/shared-memory.js';
export type { SharedMemorySource, OpenOptions, CreateOptions } from './os/shared-memory.js';
export { UnixSocket, UnixListener } from './os/unix-socket.js';
export { MESSAGE_BYTES, PROTOCOL_VERSION, encodeMessage, decodeMessage } from './protocol/messages.js';
export { IvshmemServer } from './server/ivshmem-server.js';
export {
  PeerStateTable,
  STATE_TABLE_MAGIC,
  STATE_TABLE_VERSION,
  PRESENCE_EMPTY,
  PRESENCE_PRESENT,
  PRESENCE_GONE,
  stateTableBytes,
  defaultStateTableOffset,
} from './core/peer-state-table.js';
export type { StateEntry } from './core/peer-state-table.js';
export type { StateTableDeviceOption } from './device/peer-state.js';
export type { StateTableOption } from './server/state-keeper.js';
export type { IvshmemServerOptions } from './server/ivshmem-server.js';
export { HandoverOffer, takeOver } from './server/handover.js';
export type { HandoverOptions, TakenOver } from './server/handover.js';
export { JOIN_CHANNEL, LEAVE_CHANNEL, REFUSE_CHANNEL } from './server/server-events.js';
export {
  DEVICE_CLOSE_CHANNEL,
  DEVICE_ERROR_CHANNEL,
  DEVICE_JOIN_CHANNEL,
  DEVICE_PEER_CHANNEL,
} from './device/events.js';
export type { DeviceCloseEvent, DeviceErrorEvent, DeviceJoinEvent, DevicePeerEvent } from './device/events.js';
export type {
  IvshmemServerStats,
  ServerJoinEvent,
  ServerLeaveEvent,
  ServerRefuseEvent,
} from './server/server-events.js';
export { IvshmemClient } from './client/ivshmem-client.js';
export type { IvshmemClientOptions } from './client/ivshmem-client.js';
export { ServerConnection } from './protocol/connection.js';
export type { ConnectionHandover } from './protocol/connection.js';
export { ClientProtocol } from './protocol/client-protocol.js';
export type { ClientEvent } from './protocol/client-protocol.js';
export type { Message } from './os/unix-socket.js';
export { createWaiter, stopWaiter } from './os/waiter.js';
export type { EventfdWaiter, WaitKind, OnReady, WaiterOptions } from './os/waiter.js';
export { V86Transport } from './monitors/v86/v86-transport.js';
export type { V86TransportOptions, V86Emulator } from './monitors/v86/v86-transport.js';
// Peers without kernel objects: worker threads (and browsers) ring each other with Atomics.
export { PeerDirectory } from './server/directory.js';
export type { PeerDirectoryOptions } from './server/directory.js';
export { DirectoryConnection } from './protocol/directory-connection.js';
export type { DirectoryConnectOptions } from './protocol/directory-connection.js';
export { DIRECTORY_VERSION } from './protocol/directory-messages.js';
export type { DirectoryMessage, PortLike } from './protocol/directory-messages.js';
export { Signals, SignalDoorbell, SignalWatcher, signalBytes } from './os/signals.js';
