// What a device joined to a server tells the outside: `diagnostics_channel` events (free when
// nobody subscribes) and `NODE_DEBUG=ivshmem` lines for its join, the peers that come and go, the
// server's bad messages, and the end of its connection, so an operator can follow a device
// without the embedder wiring up listeners. The server's side is src/server/server-events.ts.
import { channel } from 'node:diagnostics_channel';
import { debuglog } from 'node:util';

export const DEVICE_JOIN_CHANNEL = 'ivshmem:device:join';
export const DEVICE_PEER_CHANNEL = 'ivshmem:device:peer';
export const DEVICE_ERROR_CHANNEL = 'ivshmem:device:error';
export const DEVICE_CLOSE_CHANNEL = 'ivshmem:device:close';

export interface DeviceJoinEvent {
  socketPath: string;
  id: number;
  vectors: number;
  peers: number[];
}
export interface DevicePeerEvent {
  socketPath: string;
  id: number;
  peer: number;
  change: 'vector' | 'left';
  vectors: number;
}
export interface DeviceErrorEvent {
  socketPath: string;
  id: number;
  code: string;
  message: string;
}
export interface DeviceCloseEvent {
  socketPath: string;
  id: number;
  reason: string;
}

const joinChannel = channel(DEVICE_JOIN_CHANNEL);
const peerChannel = channel(DEVICE_PEER_CHANNEL);
const errorChannel = channel(DEVICE_ERROR_CHANNEL);
const closeChannel = channel(DEVICE_CLOSE_CHANNEL);
const debug = debuglog('ivshmem');

export function publishDeviceJoin(e: DeviceJoinEvent): void {
  debug('device %d on %s: joined with %d vectors, peers [%s]', e.id, e.socketPath, e.vectors, e.peers.join(', '));
  if (joinChannel.hasSubscribers) joinChannel.publish(e);
}

export function publishDevicePeer(e: DevicePeerEvent): void {
  debug(
    'device %d on %s: peer %d %s (%d vectors)',
    e.id,
    e.socketPath,
    e.peer,
    e.change === 'left' ? 'left' : 'announced a vector',
    e.vectors,
  );
  if (peerChannel.hasSubscribers) peerChannel.publish(e);
}

export function publishDeviceError(e: DeviceErrorEvent): void {
  debug('device %d on %s: %s: %s', e.id, e.socketPath, e.code, e.message);
  if (errorChannel.hasSubscribers) errorChannel.publish(e);
}

export function publishDeviceClose(e: DeviceCloseEvent): void {
  debug('device %d on %s: connection closed: %s', e.id, e.socketPath, e.reason);
  if (closeChannel.hasSubscribers) closeChannel.publish(e);
}
