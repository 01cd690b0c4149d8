// ivshmem's wire protocol, version 0 (QEMU 2.5 and later): the server sends, the client listens.
// Each message is a signed 64-bit little-endian integer with zero or one fd attached.
//
//   on connect:  0 (version) · own id · -1 + shm fd
//                → every existing peer: new id + eventfd, once per vector
//                → the new client: each existing peer's id + eventfd, once per vector;
//                  then its own id + its own eventfds, once per vector
//   later:       a peer joins: id + eventfd per vector · a peer leaves: id without fd
//
// The pre-2.5 ("legacy") protocol has no version message.
import { argumentError } from '../errors.js';

export const PROTOCOL_VERSION = 0n;
export const SHM_MESSAGE = -1n;
export const MAX_PEER_ID = 65535;
export const MESSAGE_BYTES = 8;

export function encodeMessage(value: bigint | number): Uint8Array {
  const bytes = new Uint8Array(MESSAGE_BYTES);
  new DataView(bytes.buffer).setBigInt64(0, BigInt(value), true);
  return bytes;
}

export function decodeMessage(bytes: Uint8Array): bigint {
  if (bytes.byteLength !== MESSAGE_BYTES) throw argumentError(RangeError, 'ERR_OUT_OF_RANGE', `a message is ${MESSAGE_BYTES} bytes, not ${bytes.byteLength}`);
  return new DataView(bytes.buffer, bytes.byteOffset, MESSAGE_BYTES).getBigInt64(0, true);
}
