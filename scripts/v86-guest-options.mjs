// The v86 machine the guest runs in, in one place (tests, example, benchmark and smoke check all
// boot the same one): the cached Debian files, an initramfs with the uio modules, and the settings
// found by trying them (ACPI off or PCI devices vanish; no network card;
// a kernel command line without the slow self-tests).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { GUEST_DIR } from './prepare-v86-guest.mjs';
import { buildInitramfs, defaultInit } from './v86-initramfs.mjs';

export const GUEST_CMDLINE =
  'console=ttyS0 quiet cryptomgr.notests noisapnp nokaslr mitigations=off random.trust_cpu=on';

/**
 * Options for `new V86(...)`: /init prints READY-42 after `extraInit`, then runs a shell on ttyS0.
 * @param {{ dir?: string, extraInit?: string }} [o]
 */
export function guestEmulatorOptions({ dir = GUEST_DIR, extraInit = '' } = {}) {
  const file = (name) => new Uint8Array(readFileSync(join(dir, name)));
  const buffer = (u8) => u8.buffer.slice(u8.byteOffset, u8.byteOffset + u8.byteLength);
  const initrd = buildInitramfs({
    busybox: file('busybox'),
    modules: ['uio.ko', 'uio_pci_generic.ko'].map((name) => ({ name, bytes: file(name) })),
    init: defaultInit(`${extraInit}\necho READY-$((6*7))`),
  });
  return {
    wasm_path: createRequire(import.meta.url).resolve('v86/build/v86.wasm'),
    bios: { buffer: buffer(file('bios.bin')) },
    bzimage: { buffer: buffer(file('bzImage')) },
    initrd: { buffer: buffer(initrd) },
    cmdline: GUEST_CMDLINE,
    memory_size: 256 * 1024 * 1024,
    autostart: false,
    acpi: false,
    net_device: { type: 'none' },
    disable_keyboard: true,
    disable_mouse: true,
    disable_speaker: true,
  };
}
