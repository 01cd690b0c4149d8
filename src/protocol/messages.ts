// ivshmem's wire protocol, version 0 (QEMU 2.5 and later): the server sends, the client listens.
// Each message is a signed 64-bit little-endian integer with zero or one fd attached.
//
//   on connect:  0 (version) · own id · -1 + shm fd
//                → every existing peer: new id + eventfd, once per vector
//                → the new client: each existing peer's id + eventfd, once per vector;
//                  then its own id + its own eventfds, once per vector
//   later:       a peer joins: id + eventfd per vector · a peer leaves: id without fd
//
// The pre-2.5 ("legacy") protocol has no version message. How the 8 bytes and the fd travel is
// the socket's business (os/framing.ts); this file gives the values their meaning.
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export { MESSAGE_BYTES, decodeMessage, encodeMessage } from '../os/framing.js';

export const PROTOCOL_VERSION = 0n;
export const SHM_MESSAGE = -1n;
export { MAX_PEER_ID } from '../core/abi.js';

/** Where QEMU's ivshmem-server listens and its ivshmem-client connects unless told otherwise. */
export const DEFAULT_SOCKET_PATH = join(tmpdir(), 'ivshmem_socket');
