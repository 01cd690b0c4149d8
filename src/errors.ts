// Errors with stable codes. Callers branch on `code`, never on message text.

export type IvshmemErrorCode =
  | 'ERR_IVSHMEM_INVALID_MODE'
  | 'ERR_IVSHMEM_INVALID_VECTORS'
  | 'ERR_IVSHMEM_INVALID_SIZE'
  | 'ERR_IVSHMEM_INVALID_OPTION'
  | 'ERR_IVSHMEM_INVALID_PEER'
  | 'ERR_IVSHMEM_TOO_MANY_VECTORS'
  | 'ERR_IVSHMEM_MASTER'
  | 'ERR_IVSHMEM_MIGRATION_BLOCKED'
  | 'ERR_IVSHMEM_STATE_FOREIGN'
  | 'ERR_IVSHMEM_STATE_VERSION'
  | 'ERR_IVSHMEM_STATE_MISMATCH'
  | 'ERR_IVSHMEM_STATE_TABLE'
  | 'ERR_IVSHMEM_STATE_CORRUPT'
  | 'ERR_IVSHMEM_SHORT_WRITE'
  | 'ERR_IVSHMEM_PROTOCOL'
  | 'ERR_IVSHMEM_PROTOCOL_VERSION'
  | 'ERR_IVSHMEM_PROTOCOL_ID'
  | 'ERR_IVSHMEM_PROTOCOL_VALUE'
  | 'ERR_IVSHMEM_PROTOCOL_SHM'
  | 'ERR_IVSHMEM_PROTOCOL_PEER'
  | 'ERR_IVSHMEM_PROTOCOL_EOF'
  | 'ERR_IVSHMEM_PROTOCOL_TIMEOUT'
  | 'ERR_IVSHMEM_PROTOCOL_FD'
  | 'ERR_IVSHMEM_PROTOCOL_FLOOD'
  | 'ERR_IVSHMEM_INTERRUPTED'
  | 'ERR_IVSHMEM_V86'
  | 'ERR_IVSHMEM_KVM'
  | 'ERR_IVSHMEM_NATIVE'
  | 'ERR_IVSHMEM_CORE'
  | 'ERR_IVSHMEM_HANDOVER'
  | 'ERR_IVSHMEM_IN_USE'
  | 'ERR_IVSHMEM_INVALID_FD'
  | 'ERR_IVSHMEM_TRANSPORT'
  | 'ERR_IVSHMEM_PID_FILE'
  | 'ERR_IVSHMEM_CLOSED'
  | 'ERR_IVSHMEM_NOT_ISOLATED';

/**
 * A TypeError or RangeError for a bad argument, coded as Node codes its own
 * (ERR_INVALID_ARG_TYPE, ERR_INVALID_ARG_VALUE, ERR_OUT_OF_RANGE).
 */
export function argumentError<E extends TypeError | RangeError>(
  Kind: new (message: string) => E,
  code: string,
  message: string,
): E & { code: string } {
  return Object.assign(new Kind(message), { code });
}

/** How a value reads in a message: "the string '4'", "the number 1.5", "null". */
export function describeValue(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (typeof value === 'string') return `the string ${JSON.stringify(value)}`;
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean')
    return `the ${typeof value} ${String(value)}`;
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'function' ? 'a function' : 'an object';
}

/** An option or argument refused by its rule: "vectors must be an integer 1..2048, got the string \"4\"". */
export function invalidValue(code: IvshmemErrorCode, name: string, wants: string, value: unknown): IvshmemError {
  return new IvshmemError(code, `${name} must be ${wants}, got ${describeValue(value)}`);
}

/** Refuses a key of `options` that is not in `known` (a typo would otherwise be ignored). */
export function checkKnownKeys(options: object, known: readonly string[], prefix = ''): void {
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      throw new IvshmemError(
        'ERR_IVSHMEM_INVALID_OPTION',
        `unknown option ${JSON.stringify(prefix + key)} (known: ${known.join(', ')})`,
      );
    }
  }
}

export class IvshmemError extends Error {
  readonly code: IvshmemErrorCode;

  constructor(code: IvshmemErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'IvshmemError';
    this.code = code;
  }
}
