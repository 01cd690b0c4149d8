// A 256-byte PCI configuration space with per-byte write masks, as the PCI 3.0 specification
// describes and QEMU implements it: a write changes only the bits its write mask allows, and bits
// in the write-1-to-clear mask are cleared by writing 1. Sizing a BAR needs no special case: its
// address bits are writable and its size bits are not, so writing all ones reads back the size.
import { PCI_CONFIG_SPACE_SIZE } from './registers.js';

export class ConfigSpace {
  readonly bytes = new Uint8Array(PCI_CONFIG_SPACE_SIZE);
  readonly wmask = new Uint8Array(PCI_CONFIG_SPACE_SIZE);
  readonly w1cmask = new Uint8Array(PCI_CONFIG_SPACE_SIZE);

  u8(offset: number): number {
    return this.bytes[offset];
  }

  u16(offset: number): number {
    return this.bytes[offset] | (this.bytes[offset + 1] << 8);
  }

  u32(offset: number): number {
    return (this.u16(offset) | (this.u16(offset + 2) << 16)) >>> 0;
  }

  set8(offset: number, value: number, into: Uint8Array = this.bytes): void {
    into[offset] = value;
  }

  set16(offset: number, value: number, into: Uint8Array = this.bytes): void {
    into[offset] = value;
    into[offset + 1] = value >>> 8;
  }

  set32(offset: number, value: number, into: Uint8Array = this.bytes): void {
    this.set16(offset, value & 0xffff, into);
    this.set16(offset + 2, value >>> 16, into);
  }

  /** Reads `size` bytes little-endian; the caller has checked the range. */
  read(offset: number, size: number): number {
    let value = 0;
    for (let i = size - 1; i >= 0; i--) value = value * 256 + this.bytes[offset + i];
    return value;
  }

  /** A guest write: masked per byte, write-1-to-clear applied. */
  write(offset: number, size: number, value: number): void {
    for (let i = 0; i < size; i++) {
      const byte = (value >>> (8 * i)) & 0xff;
      const at = offset + i;
      const wmask = this.wmask[at];
      this.bytes[at] = ((this.bytes[at] & ~wmask) | (byte & wmask)) & ~(byte & this.w1cmask[at]);
    }
  }
}
