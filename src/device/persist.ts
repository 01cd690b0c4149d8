// The device's saved state as bytes: a versioned, self-describing little-endian format.
//
//   0   "IVSH"          magic
//   4   u16 version     STATE_VERSION; newer versions are refused, not guessed at
//   6   u8  mode        0 plain, 1 doorbell, 2 intx, 3 flat
//   7   u8  flags       bit 0: 64-bit BAR2; bit 1: BAR2's memory follows the core words (v2)
//   8   u32 vectors
//   12  u32 reserved    0
//   16  u64 BAR2 size
//   24  256 bytes       PCI configuration space
//   280 u32 n           core words that follow
//   284 n × u32         IntrMask, IntrStatus, control, MSI-X table, PBA
//   then, with flag bit 1: BAR2 size bytes of shared memory (a master's migration stream carries
//   its RAM, as QEMU migrates a master's memory region).
// Version 1 (no memory flag) is still read.
import { IvshmemError } from '../errors.js';

export const STATE_MAGIC = 0x48535649; // "IVSH" read as little-endian u32
export const STATE_VERSION = 2;
const FLAG_USE64 = 1;
const FLAG_MEMORY = 2;
const HEADER_BYTES = 24;
const CONFIG_BYTES = 256;
const WORDS_AT = HEADER_BYTES + CONFIG_BYTES;

export interface DeviceState {
  mode: number;
  use64: boolean;
  vectors: number;
  bar2Size: number;
  config: Uint8Array;
  words: Uint32Array;
  /** BAR2's bytes, when the state carries them. */
  memory?: Uint8Array;
}

export function encodeState(state: DeviceState): Uint8Array {
  const wordsEnd = WORDS_AT + 4 + 4 * state.words.length;
  const bytes = new Uint8Array(wordsEnd + (state.memory?.byteLength ?? 0));
  const view = new DataView(bytes.buffer);
  view.setUint32(0, STATE_MAGIC, true);
  // Without memory the bytes are exactly version 1's, which older readers still take.
  view.setUint16(4, state.memory !== undefined ? STATE_VERSION : 1, true);
  view.setUint8(6, state.mode);
  view.setUint8(7, (state.use64 ? FLAG_USE64 : 0) | (state.memory !== undefined ? FLAG_MEMORY : 0));
  view.setUint32(8, state.vectors, true);
  view.setBigUint64(16, BigInt(state.bar2Size), true);
  bytes.set(state.config, HEADER_BYTES);
  view.setUint32(WORDS_AT, state.words.length, true);
  state.words.forEach((w, i) => view.setUint32(WORDS_AT + 4 + 4 * i, w, true));
  if (state.memory !== undefined) bytes.set(state.memory, wordsEnd);
  return bytes;
}

export function decodeState(input: Uint8Array): DeviceState {
  if (!(input instanceof Uint8Array)) {
    throw new IvshmemError('ERR_IVSHMEM_STATE_FOREIGN', 'state must be a Uint8Array produced by saveState()');
  }
  const view = new DataView(input.buffer, input.byteOffset, input.byteLength);
  if (input.byteLength < 8 || view.getUint32(0, true) !== STATE_MAGIC) {
    throw new IvshmemError('ERR_IVSHMEM_STATE_FOREIGN', 'not an ivshmem device state (bad magic)');
  }
  const version = view.getUint16(4, true);
  if (version > STATE_VERSION) {
    throw new IvshmemError(
      'ERR_IVSHMEM_STATE_VERSION',
      `state format version ${version} is newer than this library reads (${STATE_VERSION})`,
    );
  }
  if (version < 1)
    throw new IvshmemError('ERR_IVSHMEM_STATE_CORRUPT', `state format version ${version} does not exist`);
  if (input.byteLength < WORDS_AT + 4) {
    throw new IvshmemError('ERR_IVSHMEM_STATE_CORRUPT', `state is truncated (${input.byteLength} bytes)`);
  }
  const flags = view.getUint8(7);
  const hasMemory = (flags & FLAG_MEMORY) !== 0;
  if ((flags & ~(FLAG_USE64 | FLAG_MEMORY)) !== 0 || (hasMemory && version < 2)) {
    throw new IvshmemError('ERR_IVSHMEM_STATE_CORRUPT', `state has unknown flags 0x${flags.toString(16)}`);
  }
  const count = view.getUint32(WORDS_AT, true);
  const bar2Size = Number(view.getBigUint64(16, true));
  const wordsEnd = WORDS_AT + 4 + 4 * count;
  const expected = wordsEnd + (hasMemory ? bar2Size : 0);
  if (input.byteLength !== expected) {
    throw new IvshmemError(
      'ERR_IVSHMEM_STATE_CORRUPT',
      `state length ${input.byteLength} does not match its ${count} core words${hasMemory ? ` and ${bar2Size} bytes of memory` : ''}`,
    );
  }
  const words = new Uint32Array(count);
  for (let i = 0; i < count; i++) words[i] = view.getUint32(WORDS_AT + 4 + 4 * i, true);
  return {
    mode: view.getUint8(6),
    use64: (flags & FLAG_USE64) !== 0,
    vectors: view.getUint32(8, true),
    bar2Size,
    config: input.slice(HEADER_BYTES, WORDS_AT),
    words,
    memory: hasMemory ? input.subarray(wordsEnd) : undefined,
  };
}

/** The device a state is loaded into, as the state describes one. */
export interface StateTarget {
  mode: number;
  vectors: number;
  bar2Size: number;
  use64: boolean;
  coreWords: number;
  /** Whether the core words hold an MSI-X table and PBA (doorbell mode). */
  msix: boolean;
}

/** Refuses a state made for another device, or one whose pending bits name vectors that do not exist. */
export function checkStateFits(s: DeviceState, ours: StateTarget): void {
  const mismatch = (what: string, theirs: unknown, mine: unknown) =>
    new IvshmemError(
      'ERR_IVSHMEM_STATE_MISMATCH',
      `state is for a device with ${what} ${theirs}, this one has ${mine}`,
    );
  if (s.mode !== ours.mode) throw mismatch('mode', s.mode, ours.mode);
  if (s.vectors !== ours.vectors) throw mismatch('vectors', s.vectors, ours.vectors);
  if (s.bar2Size !== ours.bar2Size) throw mismatch('BAR2 size', s.bar2Size, ours.bar2Size);
  if (s.use64 !== ours.use64) throw mismatch('use64', s.use64, ours.use64);
  if (s.words.length !== ours.coreWords) throw mismatch('core words', s.words.length, ours.coreWords);
  if (!ours.msix) return;
  // The PBA is padded to 64-bit words; a pending bit past the last vector belongs to no vector
  // and nothing would ever clear it. The words are IntrMask, IntrStatus, control, then the table.
  const pba = s.words.subarray(3 + 4 * ours.vectors);
  for (let i = 0; i < pba.length; i++) {
    const used = ours.vectors - 32 * i;
    if (used < 32 && (used <= 0 ? pba[i] : pba[i] >>> used) !== 0) {
      throw new IvshmemError('ERR_IVSHMEM_STATE_CORRUPT', `state has pending bits past vector ${ours.vectors - 1}`);
    }
  }
}
