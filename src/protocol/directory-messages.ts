// The peer directory's messages: the ivshmem server's protocol where there are no sockets and no
// fds, spoken over a MessagePort (worker_threads in Node, Web Workers in a browser). The order is
// the server's: to a newcomer its version, its id, the shared memory, then every existing peer
// and last itself; to everyone else, the newcomer; to all, a peer that left. A peer's vectors
// travel as one signal buffer (see os/signals.ts) instead of one eventfd each. Peers send nothing.
import { IvshmemError } from '../errors.js';
import type { IvshmemErrorCode } from '../errors.js';
import { MAX_PEER_ID } from '../core/abi.js';

export const DIRECTORY_VERSION = 0;

export type DirectoryMessage =
  | { type: 'version'; version: number }
  | { type: 'id'; id: number }
  | { type: 'memory'; memory: SharedArrayBuffer }
  | { type: 'peer'; id: number; signals: SharedArrayBuffer }
  | { type: 'left'; id: number };

function refuse(code: IvshmemErrorCode, message: string): never {
  throw new IvshmemError(code, `the directory sent ${message}`);
}

function checkId(id: unknown, what: string): number {
  if (!Number.isInteger(id) || (id as number) < 0 || (id as number) > MAX_PEER_ID) {
    refuse('ERR_IVSHMEM_PROTOCOL_ID', `${what} ${String(id)}, not a peer id 0..${MAX_PEER_ID}`);
  }
  return id as number;
}

/** The message `data` is, or a coded error saying how it is not one. */
export function parseDirectoryMessage(data: unknown): DirectoryMessage {
  if (typeof data !== 'object' || data === null) refuse('ERR_IVSHMEM_PROTOCOL_VALUE', `${String(data)}, not a message`);
  const m = data as Record<string, unknown>;
  switch (m.type) {
    case 'version':
      if (!Number.isInteger(m.version)) refuse('ERR_IVSHMEM_PROTOCOL_VALUE', 'a version message without a version');
      return { type: 'version', version: m.version as number };
    case 'id':
      return { type: 'id', id: checkId(m.id, 'the id') };
    case 'memory':
      if (!(m.memory instanceof SharedArrayBuffer)) {
        refuse('ERR_IVSHMEM_PROTOCOL_SHM', 'shared memory that is not a SharedArrayBuffer');
      }
      return { type: 'memory', memory: m.memory };
    case 'peer':
      if (!(m.signals instanceof SharedArrayBuffer)) {
        refuse('ERR_IVSHMEM_PROTOCOL_PEER', `peer ${String(m.id)} without a SharedArrayBuffer of signals`);
      }
      return { type: 'peer', id: checkId(m.id, 'a peer id'), signals: m.signals };
    case 'left':
      return { type: 'left', id: checkId(m.id, 'a leaving peer id') };
    default:
      return refuse('ERR_IVSHMEM_PROTOCOL_VALUE', `a message of unknown type ${JSON.stringify(String(m.type))}`);
  }
}

/** The part of a MessagePort the directory and its peers use: the same in Node and in browsers. */
export interface PortLike {
  postMessage(message: unknown): void;
  addEventListener(type: 'message', listener: (event: { data: unknown }) => void): void;
  addEventListener(type: 'close', listener: () => void): void;
  removeEventListener(type: 'message', listener: (event: { data: unknown }) => void): void;
  removeEventListener(type: 'close', listener: () => void): void;
  start(): void;
  close(): void;
}

/** Whether `value` can serve as a directory port (a MessagePort, in Node or in a browser). */
export function isPortLike(value: unknown): value is PortLike {
  const p = value as Partial<PortLike> | null;
  return (
    typeof p === 'object' &&
    p !== null &&
    typeof p.postMessage === 'function' &&
    typeof p.addEventListener === 'function' &&
    typeof p.start === 'function' &&
    typeof p.close === 'function'
  );
}
