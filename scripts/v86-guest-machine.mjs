// The v86 machine the guest runs in, without reading any file: the kernel command line, the
// initramfs built around the given /init lines, and the emulator settings found by trying them
// (ACPI off or PCI devices vanish; no network card; no slow self-tests). Node (v86-guest-options.mjs)
// and the browser demo (web/guest-worker.ts) hand it the same cached Debian files.
import { buildInitramfs, defaultInit } from './v86-initramfs.mjs';

export const GUEST_CMDLINE =
  'console=ttyS0 quiet cryptomgr.notests noisapnp nokaslr mitigations=off random.trust_cpu=on';

/**
 * Options for `new V86(...)`: /init prints READY-42 after `extraInit`, then runs a shell on ttyS0.
 * @param {{ files: Record<'bios.bin' | 'bzImage' | 'busybox' | 'uio.ko' | 'uio_pci_generic.ko', Uint8Array>,
 *           wasmPath: string, extraInit?: string }} o
 */
export function guestMachine({ files, wasmPath, extraInit = '' }) {
  const buffer = (u8) => u8.buffer.slice(u8.byteOffset, u8.byteOffset + u8.byteLength);
  const initrd = buildInitramfs({
    busybox: files.busybox,
    modules: ['uio.ko', 'uio_pci_generic.ko'].map((name) => ({ name, bytes: files[name] })),
    init: defaultInit(`${extraInit}\necho READY-$((6*7))`),
  });
  return {
    wasm_path: wasmPath,
    bios: { buffer: buffer(files['bios.bin']) },
    bzimage: { buffer: buffer(files.bzImage) },
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
