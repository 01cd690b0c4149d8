// What IvshmemServer.start accepts, checked before anything is opened: each refusal names the
// option, what it takes and what it was given, with a stable code, so a typo or a string where
// a number belongs is caught at the call instead of surfacing later as a strange limit.
import { MAX_VECTORS } from '../core/abi.js';
import { checkKnownKeys, invalidValue } from '../errors.js';
import type { IvshmemErrorCode } from '../errors.js';

const KEYS = [
  'socketPath',
  'memory',
  'size',
  'vectors',
  'stallTimeoutMs',
  'maxQueuedMessages',
  'firstId',
  'legacy',
  'log',
  'stateTable',
];

function refuse(code: IvshmemErrorCode, name: string, wants: string, value: unknown): never {
  throw invalidValue(code, name, wants, value);
}

function integerIn(
  name: string,
  value: unknown,
  lo: number,
  hi: number,
  code: IvshmemErrorCode = 'ERR_IVSHMEM_INVALID_OPTION',
): void {
  if (value === undefined) return;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < lo || value > hi)
    refuse(code, name, `an integer ${lo}..${hi}`, value);
}

export function checkServerOptions(o: unknown): void {
  if (o === null || typeof o !== 'object' || Array.isArray(o)) {
    refuse('ERR_IVSHMEM_INVALID_OPTION', 'the options', 'an object with at least socketPath', o);
  }
  const options = o as Record<string, unknown>;
  checkKnownKeys(options, KEYS);
  if (typeof options.socketPath !== 'string' || options.socketPath === '')
    refuse('ERR_IVSHMEM_INVALID_OPTION', 'socketPath', 'a non-empty path', options.socketPath);
  const memory = options.memory;
  if (memory !== undefined) {
    const keys = memory !== null && typeof memory === 'object' ? Object.keys(memory) : [];
    const ok =
      keys.length === 1 &&
      (keys[0] === 'shm' || keys[0] === 'hugetlbfs') &&
      typeof (memory as Record<string, unknown>)[keys[0]] === 'string' &&
      (memory as Record<string, string>)[keys[0]] !== '';
    if (!ok) refuse('ERR_IVSHMEM_INVALID_OPTION', 'memory', '{ shm: name } or { hugetlbfs: directory }', memory);
  }
  if (
    options.size !== undefined &&
    (typeof options.size !== 'number' || !Number.isSafeInteger(options.size) || options.size <= 0)
  ) {
    refuse('ERR_IVSHMEM_INVALID_SIZE', 'size', 'a positive whole number of bytes', options.size);
  }
  integerIn('vectors', options.vectors, 1, MAX_VECTORS, 'ERR_IVSHMEM_INVALID_VECTORS');
  if (options.stallTimeoutMs !== undefined) {
    const t = options.stallTimeoutMs;
    if (typeof t !== 'number' || !Number.isFinite(t) || t <= 0 || t > 2 ** 31 - 1)
      refuse('ERR_IVSHMEM_INVALID_OPTION', 'stallTimeoutMs', 'a positive number of milliseconds', t);
  }
  integerIn('maxQueuedMessages', options.maxQueuedMessages, 1, 2 ** 31 - 1);
  const table = options.stateTable;
  if (table !== undefined && typeof table !== 'boolean') {
    const keys = table !== null && typeof table === 'object' ? Object.keys(table) : ['?'];
    if (keys.some((k) => k !== 'slots' && k !== 'offset'))
      refuse('ERR_IVSHMEM_INVALID_OPTION', 'stateTable', 'true, or { slots?, offset? }', table);
  }
  integerIn('firstId', options.firstId, 0, 0xffff);
  if (options.legacy !== undefined && typeof options.legacy !== 'boolean')
    refuse('ERR_IVSHMEM_INVALID_OPTION', 'legacy', 'a boolean', options.legacy);
  if (options.log !== undefined && typeof options.log !== 'function')
    refuse('ERR_IVSHMEM_INVALID_OPTION', 'log', 'a function', options.log);
}
