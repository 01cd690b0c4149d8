// A peer's vectors where there are no eventfds: 32-bit words of a SharedArrayBuffer that only the
// peers' glue can reach (never a guest). Word 0 is the bell, counting every ring so that a waiter
// can sleep on one address; word 1 + v counts the rings of vector v not yet taken. Like an
// eventfd, taking a vector's count resets it, so a batch of rings is reported once with its
// count. Nothing here needs the native addon: it runs in any worker, on any platform, in a browser.
import { argumentError, describeValue, IvshmemError } from '../errors.js';

const BELL = 0;
/** Route handles name (signal buffer slot, vector): 12 bits of vector, as many vectors as a device has. */
const HANDLE_VECTOR_BITS = 12;
const HANDLE_VECTOR_MASK = (1 << HANDLE_VECTOR_BITS) - 1;

/** Bytes of a signal buffer for `vectors` vectors: the bell and one word per vector. */
export function signalBytes(vectors: number): number {
  return 4 * (1 + vectors);
}

export class Signals {
  readonly words: Int32Array;
  readonly vectors: number;

  /** Signals over `buffer`, which must be a SharedArrayBuffer of whole words, the bell and at least one vector. */
  constructor(buffer: unknown) {
    if (!(buffer instanceof SharedArrayBuffer)) {
      throw argumentError(
        TypeError,
        'ERR_INVALID_ARG_TYPE',
        `signals need a SharedArrayBuffer, got ${describeValue(buffer)}`,
      );
    }
    if (buffer.byteLength < signalBytes(1) || buffer.byteLength % 4 !== 0) {
      throw new IvshmemError(
        'ERR_IVSHMEM_INVALID_SIZE',
        `a signal buffer holds a bell and one 4-byte word per vector: ${buffer.byteLength} bytes is not that`,
      );
    }
    this.words = new Int32Array(buffer);
    this.vectors = this.words.length - 1;
  }

  /** A fresh buffer for `vectors` vectors, nothing pending. */
  static create(vectors: number): Signals {
    return new Signals(new SharedArrayBuffer(signalBytes(vectors)));
  }

  get buffer(): SharedArrayBuffer {
    return this.words.buffer as SharedArrayBuffer;
  }

  /** One ring of `vector`: its count and the bell go up, and whoever sleeps on the bell wakes. */
  ring(vector: number): void {
    ringWord(this.words, vector);
  }

  /** Takes `vector`'s count (0 when nothing is pending), as a read of its eventfd would. */
  take(vector: number): number {
    return Atomics.exchange(this.words, 1 + vector, 0);
  }

  /** The bell's count now: wait() sleeps until it moves from this. */
  bell(): number {
    return Atomics.load(this.words, BELL);
  }

  /**
   * Takes every vector's count and reports each that was pending; returns how many were. Reads
   * the bell first, so a caller that waits on that value after an empty take cannot miss a ring.
   */
  takeAll(onReady: (vector: number, count: number) => void): number {
    let reported = 0;
    for (let v = 0; v < this.vectors; v++) {
      const count = this.take(v);
      if (count === 0) continue;
      reported++;
      onReady(v, count);
    }
    return reported;
  }

  /**
   * Blocks this thread (a worker, the vCPU-thread pattern; a browser's main thread may not) until
   * a vector is rung or `timeoutMs` passes, then reports what is pending. Returns how many vectors
   * were reported (0 on timeout).
   */
  waitBlocking(timeoutMs: number, onReady: (vector: number, count: number) => void): number {
    if (typeof timeoutMs !== 'number' || Number.isNaN(timeoutMs)) {
      // NaN would wait for ever without saying so.
      throw argumentError(
        TypeError,
        'ERR_INVALID_ARG_TYPE',
        `timeoutMs must be a number of ms, got ${describeValue(timeoutMs)}`,
      );
    }
    const end = timeoutMs < 0 ? Infinity : Date.now() + timeoutMs;
    for (;;) {
      const seen = this.bell();
      const n = this.takeAll(onReady);
      if (n > 0) return n;
      const left = end - Date.now();
      if (left <= 0) return 0;
      Atomics.wait(this.words, BELL, seen, left === Infinity ? undefined : left);
    }
  }

  /**
   * Waits on the event loop (Atomics.waitAsync) and reports each batch of rings as it comes, until
   * close(). One waiter per buffer: two would split the counts between them.
   */
  watch(onReady: (vector: number, count: number) => void): SignalWatcher {
    return new SignalWatcher(this, onReady);
  }
}

/** setImmediate where there is one (Node), a zero timeout elsewhere (browsers). */
const nextTurn: (f: () => void) => void =
  typeof setImmediate === 'function' ? (f) => void setImmediate(f) : (f) => void setTimeout(f, 0);

/** The bell and vector words of a buffer are rung the same way from a Signals and from a doorbell. */
function ringWord(words: Int32Array, vector: number): void {
  Atomics.add(words, 1 + vector, 1);
  Atomics.add(words, BELL, 1);
  Atomics.notify(words, BELL);
}

export class SignalWatcher {
  readonly #signals: Signals;
  readonly #onReady: (vector: number, count: number) => void;
  #closed = false;

  constructor(signals: Signals, onReady: (vector: number, count: number) => void) {
    this.#signals = signals;
    this.#onReady = onReady;
    this.#arm();
  }

  #arm(): void {
    if (this.#closed) return;
    const seen = this.#signals.bell();
    try {
      this.#signals.takeAll((v, n) => {
        if (!this.#closed) this.#onReady(v, n);
      });
    } catch (err) {
      // A listener's throw is reported as any uncaught exception is, and the watcher goes on.
      queueMicrotask(() => {
        throw err;
      });
    }
    const wait = Atomics.waitAsync(this.#signals.words, BELL, seen);
    if (!wait.async) {
      // The bell moved while we took the counts: take again on the next turn of the event loop
      // (a microtask would let a peer that rings without pause starve everything else here).
      nextTurn(() => this.#arm());
      return;
    }
    void wait.value.then(() => this.#arm());
  }

  /** Stops reporting, and wakes the pending waitAsync so that it does not outlive us. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    Atomics.notify(this.#signals.words, BELL);
  }

  get closed(): boolean {
    return this.#closed;
  }
}

/**
 * The doorbell sink for routes on signal buffers: each peer's buffer gets a slot, and a route
 * handle is (slot << 12) | vector, so ring() finds its words with a shift and a mask.
 */
export class SignalDoorbell {
  readonly #slots: (Int32Array | undefined)[] = [];

  /** Adds a peer's buffer; returns its slot (reused after remove). */
  add(signals: Signals): number {
    let slot = this.#slots.indexOf(undefined);
    if (slot < 0) slot = this.#slots.length;
    this.#slots[slot] = signals.words;
    return slot;
  }

  /** The route handle of `vector` in `slot`. */
  handle(slot: number, vector: number): number {
    return slot * (HANDLE_VECTOR_MASK + 1) + vector;
  }

  /** Forgets a slot: rings of its handles go nowhere from now on. */
  remove(slot: number): void {
    this.#slots[slot] = undefined;
  }

  ring(handle: number): void {
    const words = this.#slots[handle >>> HANDLE_VECTOR_BITS];
    const vector = handle & HANDLE_VECTOR_MASK;
    if (words === undefined || vector >= words.length - 1) return;
    ringWord(words, vector);
  }
}
