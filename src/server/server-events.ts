// What an IvshmemServer tells the outside about itself: running statistics, `diagnostics_channel`
// events (subscribers pay nothing when there are none) and `NODE_DEBUG=ivshmem` lines, so an
// operator can see joins, leaves and refusals without the embedder wiring up listeners.
import { channel } from 'node:diagnostics_channel';
import { debuglog } from 'node:util';

export const JOIN_CHANNEL = 'ivshmem:server:join';
export const LEAVE_CHANNEL = 'ivshmem:server:leave';
export const REFUSE_CHANNEL = 'ivshmem:server:refuse';

export interface ServerJoinEvent {
  socketPath: string;
  id: number;
  peers: number;
}
export interface ServerLeaveEvent {
  socketPath: string;
  id: number;
  reason: string;
  peers: number;
}
export interface ServerRefuseEvent {
  socketPath: string;
  reason: string;
}

export interface IvshmemServerStats {
  /** Peers connected now (setup finished). */
  peers: number;
  /** Peers that finished setup, and those of them that left since. */
  joins: number;
  leaves: number;
  /** Connections that went away before finishing setup (hung up, sent data, send failed). */
  setupFailures: number;
  /** Connections refused, by reason (EMFILE, ENFILE, "no free id", an eventfd errno code…). */
  refusals: Record<string, number>;
  /** Protocol messages the sockets took. */
  messagesSent: number;
  /** Clients dropped for not reading: queue over its limit, or no progress for the stall timeout. */
  slowReaderDrops: number;
  /** Messages (and their bytes on the wire) waiting now for clients whose socket is full. */
  messagesQueued: number;
  bytesQueued: number;
  /** The longest any one client's queue has been. */
  peakQueue: number;
  /** With a peer state table: where it is, and how many joins found every slot present (those peers have no entry). */
  stateTable?: { offset: number; slots: number; joinsWithoutEntry: number };
}

const joinChannel = channel(JOIN_CHANNEL);
const leaveChannel = channel(LEAVE_CHANNEL);
const refuseChannel = channel(REFUSE_CHANNEL);
const debug = debuglog('ivshmem');

export function publishJoin(event: ServerJoinEvent): void {
  debug('server %s: peer %d joined (%d peers)', event.socketPath, event.id, event.peers);
  if (joinChannel.hasSubscribers) joinChannel.publish(event);
}

export function publishLeave(event: ServerLeaveEvent): void {
  debug('server %s: peer %d left: %s (%d peers)', event.socketPath, event.id, event.reason, event.peers);
  if (leaveChannel.hasSubscribers) leaveChannel.publish(event);
}

export function publishRefuse(event: ServerRefuseEvent): void {
  debug('server %s: refused a connection: %s', event.socketPath, event.reason);
  if (refuseChannel.hasSubscribers) refuseChannel.publish(event);
}
