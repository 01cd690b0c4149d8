// Sizes as QEMU's tools take them: a number of bytes with an optional K, M or G (powers of 1024).
import { IvshmemError } from '../errors.js';

export function parseSize(text: string): number {
  const m = /^(\d+)([KMG]?)$/i.exec(text.trim());
  if (!m)
    throw new IvshmemError(
      'ERR_IVSHMEM_INVALID_SIZE',
      `size ${JSON.stringify(text)} is not a number with an optional K/M/G suffix`,
    );
  const unit = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[m[2].toUpperCase() as '' | 'K' | 'M' | 'G'];
  return Number(m[1]) * unit;
}
