#!/usr/bin/env node
// Smoke check for the v86 guest (issue #8): prepares (or reuses) the cached guest files, builds the
// initramfs, boots Linux in v86 and talks to its shell over the serial port.
//   1. waits for READY-42 (printed by /init; the script only contains "$((6*7))", so the echo of the
//      command cannot match), 2. sends `cat /proc/version; echo DONE-$((1+1))` and waits for DONE-2.
// Usage: node scripts/v86-smoke.mjs [--verbose]   (--verbose copies the guest's serial output to stderr)
import { V86 } from 'v86';
import { prepareV86Guest } from './prepare-v86-guest.mjs';
import { guestEmulatorOptions } from './v86-guest-options.mjs';

const TIMEOUT_MS = 60_000;
const verbose = process.argv.includes('--verbose');

const { dir, manifest } = await prepareV86Guest();
console.log(`kernel ${manifest.abi}-686`);
const t0 = performance.now();
const secs = (t = performance.now()) => ((t - t0) / 1000).toFixed(2);
const emulator = new V86(guestEmulatorOptions({ dir }));

let text = '';
const waiters = [];
emulator.add_listener('serial0-output-byte', (byte) => {
  const ch = String.fromCharCode(byte);
  text += ch;
  if (verbose) process.stderr.write(ch);
  for (const w of [...waiters]) w.check();
});
emulator.add_listener('emulator-loaded', () => emulator.run());

/** Resolves when `marker` appears in the serial output after position `from`. */
function waitFor(marker, from = 0, timeoutMs = TIMEOUT_MS) {
  return new Promise((resolve, reject) => {
    const w = {
      check() {
        const at = text.indexOf(marker, from);
        if (at < 0) return;
        clearTimeout(timer);
        waiters.splice(waiters.indexOf(w), 1);
        resolve(at + marker.length);
      },
    };
    const timer = setTimeout(() => {
      waiters.splice(waiters.indexOf(w), 1);
      reject(
        new Error(
          `timed out after ${timeoutMs / 1000} s waiting for ${marker}; serial output so far:\n${text.slice(-3000)}`,
        ),
      );
    }, timeoutMs);
    waiters.push(w);
    w.check();
  });
}

let code = 0;
try {
  const ready = await waitFor('READY-42');
  const bootSecs = secs();
  console.log(`guest booted: READY-42 after ${bootSecs} s`);
  emulator.serial0_send('cat /proc/version; echo DONE-$((1+1))\n');
  const done = await waitFor('DONE-2', ready);
  const version = /Linux version [^\r\n]*/.exec(text.slice(ready, done))?.[0];
  if (!version) throw new Error(`no "Linux version" line in the answer:\n${text.slice(ready, done)}`);
  console.log(`guest answered: ${version}`);
  console.log(`DONE-2 after ${secs()} s (boot ${bootSecs} s)`);
} catch (e) {
  console.error(`v86 smoke check FAILED: ${e.message}`);
  code = 1;
} finally {
  await emulator.stop();
  await emulator.destroy();
}
process.exitCode = code;
