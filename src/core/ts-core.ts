// The device core written again in plain TypeScript: the differential oracle for the WebAssembly
// core in tests and its baseline in benchmarks. Same contract (DeviceCore), same results, same
// host calls, same counters; only the storage differs (typed arrays instead of linear memory).
import {
  BAR0_SIZE,
  C_DOORBELL_NO_PEER,
  C_DOORBELL_NO_VECTOR,
  C_DOORBELL_SENT,
  C_GUEST_INVALID,
  C_IRQ_DELIVERED,
  C_IRQ_DROPPED_BAD_VECTOR,
  C_IRQ_DROPPED_DISABLED,
  C_IRQ_DROPPED_NO_MASTER,
  C_IRQ_PENDED,
  COUNTER_COUNT,
  V_DELIVERED,
  V_DROPPED_DISABLED,
  V_DROPPED_NO_MASTER,
  V_FIRED,
  V_PENDED,
  REG_DOORBELL,
  REG_INTRMASK,
  REG_INTRSTATUS,
  REG_IVPOSITION,
  VECTOR_COUNTER_KINDS,
  CTRL_BUS_MASTER,
  CTRL_INTX_DISABLE,
  CTRL_MSIX_ENABLE,
  CTRL_MSIX_MASKALL,
  MAX_PEERS,
  MAX_VECTORS,
  MODE_DOORBELL,
  MODE_FLAT,
  MODE_INTX,
  MODE_PLAIN,
  DOORBELL_FLAT_VECTOR_MASK,
  DOORBELL_VECTOR_MASK,
  FLAT_MAX_VECTORS,
  FLAT_REGS_SIZE,
  FLAT_REGS_SIZE_WITH_STATE,
  REG_STATE,
  REG_STATE_SLOT,
  REG_STATE_TABLE,
  MSIX_ENTRY_ADDR_HI,
  MSIX_ENTRY_ADDR_LO,
  MSIX_ENTRY_CTRL,
  MSIX_ENTRY_DATA,
  MSIX_ENTRY_MASKBIT,
  MSIX_ENTRY_SIZE,
  ROUTE_BAD_HANDLE,
  ROUTE_BAD_PEER,
  ROUTE_FULL,
  SIGNAL_SLOTS,
} from './abi.js';
import type { CoreHost, DeviceCore } from './abi.js';

const HOLE = 0;
const REGS = 1;
const TABLE = 2;
const PBA = 3;
const MAX_OFFSET = 0x7fffffff;

/** The index in the table's 32-bit words of MSI-X entry v's field at byte offset `field`. */
function entryWord(v: number, field: number): number {
  return (v * MSIX_ENTRY_SIZE + field) >>> 2;
}

export class TsCore implements DeviceCore {
  readonly kind = 'ts' as const;
  readonly signals = new Int32Array(SIGNAL_SLOTS);
  readonly #host: CoreHost;
  readonly #counters = new Float64Array(COUNTER_COUNT);
  #ready = false;
  #mode = MODE_PLAIN;
  #vectors = 0;
  #position = 0;
  #regsSize = BAR0_SIZE;
  // the peer state registers (assembly/peer-state.ts)
  #stateOn = false;
  #stateValue = 0;
  #stateTable = 0;
  #stateSlot = 0;
  #vectorMask = DOORBELL_VECTOR_MASK;
  // routes: per peer id, the handles announced so far (undefined = absent), and doorbells per route
  #routes: (number[] | undefined)[] = [];
  #routeCounts: (number[] | undefined)[] = [];
  #vectorCounts = new Float64Array(0);
  // interrupts
  #table = new Uint32Array(0);
  #pba = new Uint32Array(0);
  #control = 0;
  #intrMask = 0;
  #intrStatus = 0;
  #intxLevel = false;
  #lineReported = false;
  // access bookkeeping
  #pbaOffset = 0;
  #bar1Size = 0;
  #signalled = 0;
  #missed = false;
  #high = 0;
  #kind = HOLE;
  #start = 0;
  #end = 0;

  constructor(host: CoreHost) {
    this.#host = host;
  }

  init(mode: number, vectors: number, position: number): number {
    if (this.#ready) return -1;
    if (mode !== MODE_PLAIN && mode !== MODE_DOORBELL && mode !== MODE_INTX && mode !== MODE_FLAT) return -1;
    vectors >>>= 0;
    if (vectors > MAX_VECTORS || (mode === MODE_DOORBELL && vectors === 0)) return -1;
    if (mode === MODE_FLAT && (vectors === 0 || vectors > FLAT_MAX_VECTORS)) return -1;
    this.#regsSize = mode === MODE_FLAT ? FLAT_REGS_SIZE : BAR0_SIZE;
    this.#vectorMask = mode === MODE_FLAT ? DOORBELL_FLAT_VECTOR_MASK : DOORBELL_VECTOR_MASK;
    this.#mode = mode;
    this.#vectors = vectors;
    this.#vectorCounts = new Float64Array(vectors * VECTOR_COUNTER_KINDS);
    this.#position = position >>> 0;
    if (mode === MODE_DOORBELL) {
      this.#table = new Uint32Array(vectors * 4);
      this.#pba = new Uint32Array(this.#pbaBytes() >>> 2);
      const table = vectors * 16;
      this.#pbaOffset = table > 2048 ? table : 2048;
      let size = 4096;
      if (this.#pbaOffset + this.#pbaBytes() > size) size = this.#pbaOffset + this.#pbaBytes();
      this.#bar1Size = 2 ** Math.ceil(Math.log2(size));
    }
    this.reset();
    this.#ready = true;
    return 0;
  }

  #pbaBytes(): number {
    return ((this.#vectors + 63) & ~63) >>> 3;
  }

  reset(): void {
    this.#intrMask = 0;
    this.#intrStatus = 0;
    this.#control = 0;
    this.#table.fill(0);
    this.#pba.fill(0);
    for (let v = 0; v < this.#vectors && this.#mode === MODE_DOORBELL; v++)
      this.#table[entryWord(v, MSIX_ENTRY_CTRL)] = MSIX_ENTRY_MASKBIT;
    this.#updateLine();
  }

  setPosition(id: number): void {
    this.#position = id >>> 0;
  }

  msixBarSize(): number {
    return this.#mode === MODE_DOORBELL ? this.#bar1Size : 0;
  }

  msixPbaOffset(): number {
    return this.#pbaOffset;
  }

  counterValue(id: number): number {
    return id >= 0 && id < COUNTER_COUNT ? this.#counters[id] : 0;
  }

  routeDoorbells(peer: number, vector: number): number {
    return this.#routeCounts[peer >>> 0]?.[vector >>> 0] ?? 0;
  }

  vectorCounter(vector: number, kind: number): number {
    const v = vector >>> 0;
    const k = kind >>> 0;
    return v < this.#vectors && k < VECTOR_COUNTER_KINDS ? this.#vectorCounts[v * VECTOR_COUNTER_KINDS + k] : 0;
  }

  #countVector(v: number, kind: number): void {
    this.#vectorCounts[v * VECTOR_COUNTER_KINDS + kind]++;
  }

  // ---- routes ----

  addRoute(peer: number, handle: number): number {
    peer >>>= 0;
    handle |= 0;
    if (peer >= MAX_PEERS) return ROUTE_BAD_PEER;
    if (handle < 0) return ROUTE_BAD_HANDLE;
    if (this.#vectors === 0) return ROUTE_FULL; // a refused peer stays absent
    const list = (this.#routes[peer] ??= []);
    if (list.length >= this.#vectors) return ROUTE_FULL;
    list.push(handle);
    (this.#routeCounts[peer] ??= []).push(0);
    return list.length - 1;
  }

  removePeer(peer: number): number {
    peer >>>= 0;
    const list = this.#routes[peer];
    if (list === undefined) return -1;
    this.#routes[peer] = undefined;
    this.#routeCounts[peer] = undefined;
    return list.length;
  }

  peerVectors(peer: number): number {
    return this.#routes[peer >>> 0]?.length ?? 0;
  }

  // ---- INTx ----

  #updateLine(): void {
    const line = this.#lineLevel();
    if (line !== this.#lineReported) this.#reportLine(line);
  }

  #lineLevel(): boolean {
    this.#intxLevel = this.#mode === MODE_INTX && (this.#intrStatus & this.#intrMask) !== 0;
    return this.#intxLevel && (this.#control & CTRL_INTX_DISABLE) === 0;
  }

  #reportLine(line: boolean): void {
    this.#lineReported = line;
    this.#host.setIrqLevel(line ? 1 : 0);
  }

  intxAsserted(): number {
    return this.#intxLevel ? 1 : 0;
  }

  // ---- MSI-X ----

  #functionMasked(): boolean {
    return (this.#control & CTRL_MSIX_ENABLE) === 0 || (this.#control & CTRL_MSIX_MASKALL) !== 0;
  }

  #vectorMasked(v: number, fmask: boolean): boolean {
    return fmask || (this.#table[entryWord(v, MSIX_ENTRY_CTRL)] & MSIX_ENTRY_MASKBIT) !== 0;
  }

  #isPending(v: number): boolean {
    return (this.#pba[v >>> 5] & (1 << (v & 31))) !== 0;
  }

  #setPending(v: number, on: boolean): void {
    const bit = 1 << (v & 31);
    this.#pba[v >>> 5] = on ? this.#pba[v >>> 5] | bit : this.#pba[v >>> 5] & ~bit;
  }

  #deliver(v: number): void {
    if ((this.#control & CTRL_BUS_MASTER) === 0) {
      this.#counters[C_IRQ_DROPPED_NO_MASTER]++;
      this.#countVector(v, V_DROPPED_NO_MASTER);
      return;
    }
    this.#counters[C_IRQ_DELIVERED]++;
    this.#countVector(v, V_DELIVERED);
    const t = this.#table;
    this.#host.sendMsi(
      t[entryWord(v, MSIX_ENTRY_ADDR_LO)],
      t[entryWord(v, MSIX_ENTRY_ADDR_HI)],
      t[entryWord(v, MSIX_ENTRY_DATA)],
      v,
    );
  }

  #notify(v: number): void {
    if (this.#vectorMasked(v, this.#functionMasked())) {
      this.#counters[C_IRQ_PENDED]++;
      this.#countVector(v, V_PENDED);
      this.#setPending(v, true);
    } else {
      this.#deliver(v);
    }
  }

  #maskUpdated(v: number, wasMasked: boolean): void {
    // Only a vector that was masked and no longer is delivers what it has pending.
    if (!wasMasked || this.#vectorMasked(v, this.#functionMasked())) return;
    if (this.#isPending(v)) {
      this.#setPending(v, false);
      this.#notify(v);
    }
  }

  vectorFired(vector: number): void {
    const v = vector >>> 0;
    if (v >= this.#vectors) {
      this.#counters[C_IRQ_DROPPED_BAD_VECTOR]++;
      return;
    }
    this.#countVector(v, V_FIRED);
    if (this.#mode === MODE_FLAT) {
      this.#counters[C_IRQ_DELIVERED]++;
      this.#countVector(v, V_DELIVERED);
      this.#host.setIrqLevel(1); // a pulse on the one line, as assembly/interrupts.ts gives it
      this.#host.setIrqLevel(0);
      return;
    }
    if (this.#mode === MODE_INTX) {
      this.#intrStatus = (this.#intrStatus | 1) >>> 0;
      this.#counters[C_IRQ_DELIVERED]++;
      this.#countVector(v, V_DELIVERED);
      this.#updateLine();
      return;
    }
    if ((this.#control & CTRL_MSIX_ENABLE) === 0) {
      this.#counters[C_IRQ_DROPPED_DISABLED]++;
      this.#countVector(v, V_DROPPED_DISABLED);
      return;
    }
    this.#notify(v);
  }

  vectorDeliverable(vector: number): number {
    const v = vector >>> 0;
    if (this.#mode !== MODE_DOORBELL || v >= this.#vectors) return 0;
    return !this.#vectorMasked(v, this.#functionMasked()) && (this.#control & CTRL_BUS_MASTER) !== 0 ? 1 : 0;
  }

  setControl(flags: number): void {
    const was = this.#functionMasked();
    this.#control = flags >>> 0;
    this.#updateLine();
    if (this.#mode !== MODE_DOORBELL || (this.#control & CTRL_MSIX_ENABLE) === 0) return;
    if (this.#functionMasked() === was) return;
    for (let v = 0; v < this.#vectors; v++) this.#maskUpdated(v, this.#vectorMasked(v, was));
  }

  getControl(): number {
    return this.#control;
  }

  // ---- BAR0 registers ----

  #readDword(offset: number): number {
    const flat = this.#mode === MODE_FLAT;
    if (flat && (offset === REG_INTRMASK || offset === REG_INTRSTATUS)) return 0; // reserved in flat
    if (offset === REG_INTRMASK) return this.#intrMask;
    if (offset === REG_INTRSTATUS) {
      const value = this.#intrStatus;
      this.#intrStatus = 0;
      this.#updateLine();
      return value;
    }
    if (offset === REG_IVPOSITION) return this.#position;
    if (this.#stateOn) {
      if (offset === REG_STATE) return this.#stateValue;
      if (offset === REG_STATE_TABLE) return this.#stateTable;
      if (offset === REG_STATE_SLOT) return this.#stateSlot;
    }
    this.#missed = true;
    return 0;
  }

  #writeDword(offset: number, value: number): void {
    const reg = offset & 0xfc;
    if (reg === REG_DOORBELL) this.#ring(value);
    else if (this.#mode === MODE_FLAT && (reg === REG_INTRMASK || reg === REG_INTRSTATUS)) return;
    else if (reg === REG_INTRMASK) {
      this.#intrMask = value >>> 0;
      this.#updateLine();
    } else if (reg === REG_INTRSTATUS) {
      this.#intrStatus = value >>> 0;
      this.#updateLine();
    } else if (reg === REG_STATE && this.#stateOn) {
      this.#stateValue = value >>> 0;
      this.#host.statePublished?.(this.#stateValue);
    } else this.#missed = true;
  }

  #ring(value: number): void {
    const handle = this.#route(value);
    if (handle < 0) return;
    if (this.#signalled < SIGNAL_SLOTS) this.signals[this.#signalled] = handle;
    this.#signalled++;
  }

  // The route's handle, counted as sent, or -1 (counted as dropped).
  #route(value: number): number {
    const peer = value >>> 16;
    const vector = value & this.#vectorMask;
    const list = this.#routes[peer];
    if (list === undefined) {
      this.#counters[C_DOORBELL_NO_PEER]++;
      return -1;
    }
    if (vector >= list.length) {
      this.#counters[C_DOORBELL_NO_VECTOR]++;
      return -1;
    }
    this.#counters[C_DOORBELL_SENT]++;
    this.#routeCounts[peer]![vector]++;
    return list[vector];
  }

  // ---- access splitting (see assembly/access.ts for the rules) ----

  #regionAt(bar: number, offset: number): void {
    this.#kind = HOLE;
    this.#start = offset;
    this.#end = 0xffffffff;
    if (bar === 0) {
      if (offset < this.#regsSize) {
        this.#kind = REGS;
        this.#start = 0;
        this.#end = this.#regsSize;
      }
    } else if (bar === 1 && this.#mode === MODE_DOORBELL && offset < this.#bar1Size) {
      const tableEnd = this.#vectors * 16;
      const pbaEnd = this.#pbaOffset + this.#pbaBytes();
      if (offset < tableEnd) {
        this.#kind = TABLE;
        this.#start = 0;
        this.#end = tableEnd;
      } else if (offset < this.#pbaOffset) {
        this.#end = this.#pbaOffset;
      } else if (offset < pbaEnd) {
        this.#kind = PBA;
        this.#start = this.#pbaOffset;
        this.#end = pbaEnd;
      } else {
        this.#end = this.#bar1Size;
      }
    }
  }

  #pieceLength(pos: number, left: number): number {
    let l = Math.min(left, this.#end - pos);
    let max = this.#kind === TABLE || this.#kind === PBA ? 8 : 4;
    const rel = pos - this.#start;
    const align = rel & -rel;
    if (align !== 0 && align < max) max = align;
    if (l > max) l = max;
    return 1 << (31 - Math.clz32(l));
  }

  // Piece values are handled as bigint only here, off the aligned fast path.
  #readPiece(rel: number, len: number): bigint {
    if (this.#kind === REGS) return BigInt(this.#readDword(rel));
    if (this.#kind === HOLE || len < 4) {
      this.#missed = true;
      return 0n;
    }
    let value = 0n;
    for (let i = 0; i < len; i += 4) {
      const dword = this.#kind === TABLE ? this.#table[(rel + i) >>> 2] : this.#pba[(rel + i) >>> 2];
      value |= BigInt(dword) << BigInt(i * 8);
    }
    return value;
  }

  #writePiece(rel: number, len: number, value: bigint): void {
    if (this.#kind === REGS) {
      this.#writeDword(rel, Number(value & 0xffffffffn));
      return;
    }
    if (this.#kind !== TABLE || len < 4) {
      this.#missed = true;
      return;
    }
    for (let i = 0; i < len; i += 4) {
      const at = rel + i;
      const v = at >>> 4;
      const was = this.#vectorMasked(v, this.#functionMasked());
      this.#table[at >>> 2] = Number((value >> BigInt(i * 8)) & 0xffffffffn);
      this.#maskUpdated(v, was);
    }
  }

  mmioRead(bar: number, offset: number, size: number): number {
    bar >>>= 0;
    offset >>>= 0;
    size >>>= 0;
    this.#missed = false;
    this.#signalled = 0;
    if (bar === 0 && size === 4 && (offset & 3) === 0 && offset < this.#regsSize) {
      const dword = this.#readDword(offset);
      if (this.#missed) this.#counters[C_GUEST_INVALID]++;
      this.#high = 0;
      return dword >>> 0;
    }
    let result = 0n;
    if (size < 1 || size > 8 || offset > MAX_OFFSET) {
      this.#missed = true;
    } else {
      for (let done = 0; done < size;) {
        const pos = offset + done;
        this.#regionAt(bar, pos);
        const len = this.#pieceLength(pos, size - done);
        const piece = this.#readPiece(pos - this.#start, len) & ((1n << BigInt(len * 8)) - 1n);
        result |= piece << BigInt(done * 8);
        done += len;
      }
    }
    if (this.#missed) this.#counters[C_GUEST_INVALID]++;
    this.#high = Number(result >> 32n);
    return Number(result & 0xffffffffn);
  }

  readHigh(): number {
    return this.#high;
  }

  read32(offset: number): number {
    return this.mmioRead(0, offset, 4);
  }

  write32(offset: number, value: number): number {
    return this.mmioWrite(0, offset, 4, value, 0);
  }

  doorbell(value: number): number {
    return this.#route(value >>> 0);
  }

  mmioWrite(bar: number, offset: number, size: number, lo: number, hi: number): number {
    bar >>>= 0;
    offset >>>= 0;
    size >>>= 0;
    this.#missed = false;
    this.#signalled = 0;
    if (bar === 0 && size === 4 && (offset & 3) === 0 && offset < this.#regsSize) {
      this.#writeDword(offset, lo >>> 0);
      if (this.#missed) this.#counters[C_GUEST_INVALID]++;
      return this.#signalled;
    }
    if (size < 1 || size > 8 || offset > MAX_OFFSET) {
      this.#missed = true;
    } else {
      const value = (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
      for (let done = 0; done < size;) {
        const pos = offset + done;
        this.#regionAt(bar, pos);
        const len = this.#pieceLength(pos, size - done);
        const piece = (value >> BigInt(done * 8)) & ((1n << BigInt(len * 8)) - 1n);
        this.#writePiece(pos - this.#start, len, piece);
        done += len;
      }
    }
    if (this.#missed) this.#counters[C_GUEST_INVALID]++;
    return this.#signalled;
  }

  // ---- state ----

  enableStateTable(offset: number, slot: number): void {
    this.#stateOn = true;
    this.#stateTable = offset >>> 0;
    this.#stateSlot = slot >>> 0;
    if (this.#regsSize < FLAT_REGS_SIZE_WITH_STATE) this.#regsSize = FLAT_REGS_SIZE_WITH_STATE;
  }

  stateWords(): number {
    return 3 + this.#table.length + this.#pba.length + (this.#stateOn ? 1 : 0);
  }

  stateRead(index: number): number {
    const i = index >>> 0;
    if (i === 0) return this.#intrMask;
    if (i === 1) return this.#intrStatus;
    if (i === 2) return this.#control;
    if (i - 3 < this.#table.length) return this.#table[i - 3];
    if (i - 3 - this.#table.length < this.#pba.length) return this.#pba[i - 3 - this.#table.length];
    if (this.#stateOn && i - 3 - this.#table.length === this.#pba.length) return this.#stateValue;
    return 0;
  }

  stateWrite(index: number, value: number): void {
    const i = index >>> 0;
    const v = value >>> 0;
    if (i === 0) this.#intrMask = v;
    else if (i === 1) this.#intrStatus = v;
    else if (i === 2) this.#control = v;
    else if (i - 3 < this.#table.length) this.#table[i - 3] = v;
    else if (i - 3 - this.#table.length < this.#pba.length) this.#pba[i - 3 - this.#table.length] = v;
    else if (this.#stateOn && i - 3 - this.#table.length === this.#pba.length) this.#stateValue = v;
  }

  stateCommit(): void {
    const line = this.#lineLevel();
    if (this.#mode === MODE_INTX) this.#reportLine(line);
    if (this.#mode !== MODE_DOORBELL || (this.#control & CTRL_MSIX_ENABLE) === 0) return;
    for (let v = 0; v < this.#vectors; v++) this.#maskUpdated(v, true);
  }
}
