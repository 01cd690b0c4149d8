// Types of v86-guest-machine.mjs for the TypeScript that imports it (the browser demo's guest worker).
export declare const GUEST_CMDLINE: string;
export type GuestFileName = 'bios.bin' | 'bzImage' | 'busybox' | 'uio.ko' | 'uio_pci_generic.ko';
export declare function guestMachine(o: {
  files: Record<GuestFileName, Uint8Array>;
  wasmPath: string;
  extraInit?: string;
}): object;
