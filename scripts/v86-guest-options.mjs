// The v86 machine the guest runs in, in one place for Node (tests, example, benchmark and smoke
// check all boot the same one): v86-guest-machine.mjs's settings with the cached Debian files read
// from disk and v86's own WebAssembly file.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { GUEST_DIR, GUEST_FILES } from './prepare-v86-guest.mjs';
import { guestMachine } from './v86-guest-machine.mjs';

/**
 * Options for `new V86(...)`: /init prints READY-42 after `extraInit`, then runs a shell on ttyS0.
 * @param {{ dir?: string, extraInit?: string }} [o]
 */
export function guestEmulatorOptions({ dir = GUEST_DIR, extraInit = '' } = {}) {
  const files = Object.fromEntries(GUEST_FILES.map((name) => [name, new Uint8Array(readFileSync(join(dir, name)))]));
  return guestMachine({
    files,
    wasmPath: createRequire(import.meta.url).resolve('v86/build/v86.wasm'),
    extraInit,
  });
}
