// A tiny 16-bit (real-mode) x86 assembler for test guests: raw bytes, labels, 16-bit absolute
// references and rel8 branches resolved from labels (never counted by hand), and mnemonics for
// the few instructions the KVM guests use. Segment overrides are prefixes: `a.es().store32(…)`.

type Fixup = { at: number; label: string; kind: 'abs16' | 'rel8' };

export type Seg = 'es' | 'ds' | 'fs' | 'gs' | 'ss';
const SEG_PREFIX: Record<Seg, number> = { es: 0x26, ss: 0x36, ds: 0x3e, fs: 0x64, gs: 0x65 };
const SEG_REG: Record<Seg, number> = { es: 0, ss: 2, ds: 3, fs: 4, gs: 5 };
const JCC = { jo: 0x70, jb: 0x72, jae: 0x73, je: 0x74, jne: 0x75, jbe: 0x76, ja: 0x77, jl: 0x7c, jge: 0x7d } as const;
export type Jcc = keyof typeof JCC;

/** A 16-bit absolute address: a number, or a label resolved at assembly. */
export type Addr = number | string;

export class Asm16 {
  readonly bytes: number[] = [];
  readonly #labels = new Map<string, number>();
  readonly #fixups: Fixup[] = [];

  /** `origin`: where the code is loaded (with CS = DS = 0, so labels are absolute addresses). */
  constructor(readonly origin: number) {}

  emit(...b: number[]): this {
    this.bytes.push(...b);
    return this;
  }
  imm8(v: number): this {
    return this.emit(v & 0xff);
  }
  imm16(v: number): this {
    return this.emit(v & 0xff, (v >>> 8) & 0xff);
  }
  imm32(v: number): this {
    return this.emit(v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff);
  }
  /** A 16-bit absolute address (a number, or a label patched at assembly). */
  addr16(a: Addr): this {
    if (typeof a === 'number') return this.imm16(a);
    this.#fixups.push({ at: this.bytes.length, label: a, kind: 'abs16' });
    return this.emit(0, 0);
  }
  /** Kept from the first version of the assembler: the absolute address of `label`. */
  abs16(label: string): this {
    return this.addr16(label);
  }

  label(name: string): this {
    if (this.#labels.has(name)) throw new Error(`label ${name} defined twice`);
    this.#labels.set(name, this.origin + this.bytes.length);
    return this;
  }
  address(name: string): number {
    const a = this.#labels.get(name);
    if (a === undefined) throw new Error(`no label ${name}`);
    return a;
  }

  // ---- data ----
  /** A labelled 32-bit data word. */
  dd(name: string, value = 0): this {
    return this.label(name).imm32(value);
  }

  // ---- prefixes ----
  seg(s: Seg): this {
    return this.emit(SEG_PREFIX[s]);
  }
  es(): this {
    return this.seg('es');
  }
  fs(): this {
    return this.seg('fs');
  }
  gs(): this {
    return this.seg('gs');
  }

  // ---- moves (32-bit forms carry the 0x66 operand-size prefix) ----
  movAx(v: number): this {
    return this.emit(0xb8).imm16(v);
  }
  movDx(v: number): this {
    return this.emit(0xba).imm16(v);
  }
  movSp(v: number): this {
    return this.emit(0xbc).imm16(v);
  }
  movAl(v: number): this {
    return this.emit(0xb0).imm8(v);
  }
  movEax(v: number): this {
    return this.emit(0x66, 0xb8).imm32(v);
  }
  movEbx(v: number): this {
    return this.emit(0x66, 0xbb).imm32(v);
  }
  /** mov <seg>, ax */
  movSegAx(s: Seg): this {
    return this.emit(0x8e, 0xc0 | (SEG_REG[s] << 3));
  }
  xorAxAx(): this {
    return this.emit(0x31, 0xc0);
  }
  /** mov eax, ebx */
  movEaxEbx(): this {
    return this.emit(0x66, 0x89, 0xd8);
  }
  /** mov eax, [addr] (segment: DS unless prefixed) */
  load32(a: Addr): this {
    return this.emit(0x66, 0xa1).addr16(a);
  }
  /** mov [addr], eax */
  store32(a: Addr): this {
    return this.emit(0x66, 0xa3).addr16(a);
  }
  /** mov [addr], ebx */
  storeEbx(a: Addr): this {
    return this.emit(0x66, 0x89, 0x1e).addr16(a);
  }
  /** mov dword [addr], imm32 */
  store32Imm(a: Addr, v: number): this {
    return this.emit(0x66, 0xc7, 0x06).addr16(a).imm32(v);
  }
  /** mov word [addr], imm16 (a number, or a label's address) */
  store16Imm(a: Addr, v: Addr): this {
    return this.emit(0xc7, 0x06).addr16(a).addr16(v);
  }

  movBx(v: number): this {
    return this.emit(0xbb).imm16(v);
  }
  /** mov <seg>, bx */
  movSegBx(s: Seg): this {
    return this.emit(0x8e, 0xc3 | (SEG_REG[s] << 3));
  }
  movEdi(v: number): this {
    return this.emit(0x66, 0xbf).imm32(v);
  }
  xorEaxEax(): this {
    return this.emit(0x66, 0x31, 0xc0);
  }
  /** mov [edi], eax: 32-bit addressing (0x67), so with a flat segment (see lgdt) it reaches 4 GiB. */
  storeEdi32(): this {
    return this.emit(0x66, 0x67, 0x89, 0x07);
  }
  /** mov eax, [edi] */
  loadEdi32(): this {
    return this.emit(0x66, 0x67, 0x8b, 0x07);
  }
  pushEdi(): this {
    return this.emit(0x66, 0x57);
  }
  popEdi(): this {
    return this.emit(0x66, 0x5f);
  }

  // ---- system ----
  /** lgdt [addr] (a 6-byte pseudo-descriptor: limit16, base32) */
  lgdt(a: Addr): this {
    return this.emit(0x0f, 0x01, 0x16).addr16(a);
  }
  movEaxCr0(): this {
    return this.emit(0x0f, 0x20, 0xc0);
  }
  movCr0Eax(): this {
    return this.emit(0x0f, 0x22, 0xc0);
  }

  // ---- arithmetic ----
  andAl(v: number): this {
    return this.emit(0x24).imm8(v);
  }
  /** cmp eax, [addr] */
  cmpEaxMem(a: Addr): this {
    return this.emit(0x66, 0x3b, 0x06).addr16(a);
  }
  /** inc dword [addr] */
  incDword(a: Addr): this {
    return this.emit(0x66, 0xff, 0x06).addr16(a);
  }
  /** dec dword [addr] */
  decDword(a: Addr): this {
    return this.emit(0x66, 0xff, 0x0e).addr16(a);
  }
  orAl(v: number): this {
    return this.emit(0x0c).imm8(v);
  }
  andEax(v: number): this {
    return this.emit(0x66, 0x25).imm32(v);
  }
  orEax(v: number): this {
    return this.emit(0x66, 0x0d).imm32(v);
  }
  notEax(): this {
    return this.emit(0x66, 0xf7, 0xd0);
  }
  incEax(): this {
    return this.emit(0x66, 0x40);
  }
  addEbx(v: number): this {
    return this.emit(0x66, 0x81, 0xc3).imm32(v);
  }
  cmpEax(v: number): this {
    return this.emit(0x66, 0x3d).imm32(v);
  }
  cmpEbx(v: number): this {
    return this.emit(0x66, 0x81, 0xfb).imm32(v);
  }
  /** cmp byte [addr], imm8 */
  cmpByte(a: Addr, v: number): this {
    return this.emit(0x80, 0x3e).addr16(a).imm8(v);
  }
  /** inc byte [addr] */
  incByte(a: Addr): this {
    return this.emit(0xfe, 0x06).addr16(a);
  }

  // ---- port I/O ----
  outDxEax(): this {
    return this.emit(0x66, 0xef);
  }
  inEaxDx(): this {
    return this.emit(0x66, 0xed);
  }
  outDxAl(): this {
    return this.emit(0xee);
  }
  outImmAl(port: number): this {
    return this.emit(0xe6).imm8(port);
  }
  /** mov al, v; out port, al (through DX for ports above 0xff) */
  outb(port: number, v: number): this {
    return port > 0xff ? this.movDx(port).movAl(v).outDxAl() : this.movAl(v).outImmAl(port);
  }

  // ---- control ----
  /** A short branch to `label` (rel8, checked at assembly). */
  jcc(cc: Jcc | 'jmp', label: string): this {
    this.emit(cc === 'jmp' ? 0xeb : JCC[cc]);
    this.#fixups.push({ at: this.bytes.length, label, kind: 'rel8' });
    return this.emit(0);
  }
  jmp(label: string): this {
    return this.jcc('jmp', label);
  }
  cli(): this {
    return this.emit(0xfa);
  }
  sti(): this {
    return this.emit(0xfb);
  }
  hlt(): this {
    return this.emit(0xf4);
  }
  iret(): this {
    return this.emit(0xcf);
  }
  pushEax(): this {
    return this.emit(0x66, 0x50);
  }
  popEax(): this {
    return this.emit(0x66, 0x58);
  }

  assemble(): Uint8Array {
    const out = [...this.bytes];
    for (const { at, label, kind } of this.#fixups) {
      const a = this.address(label);
      if (kind === 'abs16') {
        if (a > 0xffff) throw new Error(`label ${label} (0x${a.toString(16)}) is beyond 16-bit addressing`);
        out[at] = a & 0xff;
        out[at + 1] = a >>> 8;
      } else {
        const rel = a - (this.origin + at + 1);
        if (rel < -128 || rel > 127) throw new Error(`branch to ${label} out of rel8 range (${rel})`);
        out[at] = rel & 0xff;
      }
    }
    return Uint8Array.from(out);
  }
}
