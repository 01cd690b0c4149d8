// The records a UNIX stream socket carries for ivshmem: 8 bytes each (a little-endian int64) with
// at most one fd. Pure: it keeps the bytes and the fd of the record being assembled, and hands
// back what arrives; the socket does the reading and closes what this refuses. Because a read may
// never take more than the rest of the current record, an fd can only arrive with the record it
// belongs to, however the stream is split.
import { argumentError } from '../errors.js';

export const MESSAGE_BYTES = 8;

export interface Message {
  value: bigint;
  /** The fd that came with the message (now owned by the receiver), or -1. */
  fd: number;
}

export function encodeMessage(value: bigint | number): Uint8Array {
  const bytes = new Uint8Array(MESSAGE_BYTES);
  new DataView(bytes.buffer).setBigInt64(0, BigInt(value), true);
  return bytes;
}

export function decodeMessage(bytes: Uint8Array): bigint {
  if (bytes.byteLength !== MESSAGE_BYTES) {
    throw argumentError(RangeError, 'ERR_OUT_OF_RANGE', `a message is ${MESSAGE_BYTES} bytes, not ${bytes.byteLength}`);
  }
  return new DataView(bytes.buffer, bytes.byteOffset, MESSAGE_BYTES).getBigInt64(0, true);
}

export class MessageFramer {
  /** Where the next read lands, at `have`, for at most `room` bytes. */
  readonly buffer = new Uint8Array(MESSAGE_BYTES);
  #have = 0;
  #fd = -1;

  /** Bytes of the incomplete record received so far. */
  get have(): number {
    return this.#have;
  }

  /** How many bytes the next read may take: never past the end of the current record. */
  get room(): number {
    return MESSAGE_BYTES - this.#have;
  }

  /**
   * Accounts for a read of `bytes` (0..room; 0 at end of stream or when only fds came) into
   * `buffer` at `have`, with the fds that came with it. The first fd of a record is kept for it;
   * every other fd is handed to `refuse` (the caller closes it). Returns the record this read
   * completed, or null.
   */
  took(bytes: number, fds: readonly number[], refuse: (fd: number) => void): Message | null {
    if (!Number.isInteger(bytes) || bytes < 0 || bytes > this.room) {
      throw argumentError(RangeError, 'ERR_OUT_OF_RANGE', `a read must be 0..${this.room} bytes, not ${bytes}`);
    }
    for (const fd of fds) {
      if (this.#fd < 0) this.#fd = fd;
      else refuse(fd);
    }
    this.#have += bytes;
    if (this.#have < MESSAGE_BYTES) return null;
    const message = { value: decodeMessage(this.buffer), fd: this.#fd };
    this.#have = 0;
    this.#fd = -1;
    return message;
  }

  /** Drops the incomplete record; returns its fd (the caller closes it), or -1. */
  drop(): number {
    const fd = this.#fd;
    this.#have = 0;
    this.#fd = -1;
    return fd;
  }
}
