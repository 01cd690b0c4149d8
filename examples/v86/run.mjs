#!/usr/bin/env node
// A Linux guest in v86 with an ivshmem device, next to a host peer, all in this process:
//   node examples/v86/run.mjs
// See README.md next to this file.
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { V86 } from 'v86';
import { IvshmemClient, IvshmemDevice, IvshmemServer, V86Transport } from 'ivshmem-ts';
import { prepareV86Guest } from '../../scripts/prepare-v86-guest.mjs';
import { guestEmulatorOptions } from '../../scripts/v86-guest-options.mjs';

const BAR0 = 0xfe000000; // V86Transport's defaults
const BAR2 = 0xf0000000;
const t0 = performance.now();
const ms = (from) => `${(performance.now() - from).toFixed(0)} ms`;
const say = (text) => console.log(`[${((performance.now() - t0) / 1000).toFixed(1).padStart(5)} s] ${text}`);
const sleep = (n) => new Promise((r) => setTimeout(r, n));

// 1. The guest's files (kernel, uio modules, busybox, SeaBIOS), fetched from Debian once.
const { dir } = await prepareV86Guest({ log: say });

// 2. A server, a host peer (IvshmemClient), and the guest's device, all joined to the server.
const socketPath = join(tmpdir(), `ivshmem-v86-example-${process.pid}.sock`);
const shm = `ivshmem-v86-example-${process.pid}`;
const server = IvshmemServer.start({ socketPath, memory: { shm }, size: 1 << 20, vectors: 1 });
const host = await IvshmemClient.connect(socketPath, { vectors: 1 });
const hostMemory = new Uint8Array(host.connection.memory.map());
const transport = new V86Transport();
const device = await IvshmemDevice.create({ mode: 'intx', vectors: 1, server: socketPath, transport });
say(`server on ${socketPath} (shm ${shm}); host peer id ${host.id}, guest device id ${device.id}`);
// Ctrl-C: the server removes its socket and shm object on close.
process.once('SIGINT', () => {
  device.close();
  host.close();
  server.close();
  process.exit(130);
});

// 3. The guest: v86 with the device attached when the emulator is loaded, before the CPU runs.
// acpi off (with ACPI this guest loses most PCI devices), no network card, fast kernel cmdline.
const emulator = new V86(guestEmulatorOptions({ dir }));
emulator.add_listener('emulator-loaded', () => {
  transport.attach(emulator, device);
  emulator.run();
});

// The serial console. Output is found between two echoed sums ($((n+0))): the tty also echoes
// the command lines themselves, where the sums are not computed yet.
let consoleText = '';
emulator.add_listener('serial0-output-byte', (byte) => {
  consoleText += String.fromCharCode(byte);
});
async function waitFor(marker, from = 0, timeoutMs = 60_000) {
  const end = Date.now() + timeoutMs;
  while (consoleText.indexOf(marker, from) < 0) {
    if (Date.now() > end) throw new Error(`the guest never printed ${marker}; console:\n${consoleText.slice(-1000)}`);
    await sleep(5);
  }
  return consoleText.indexOf(marker, from);
}
let serial = 100;
/** Runs a shell command in the guest; resolves with what it printed. */
async function guest(command) {
  const id = serial++;
  const from = consoleText.length;
  emulator.serial0_send(`echo B-$((${id}+0)); ${command}\necho E-$((${id}+0))\n`);
  const start = (await waitFor(`B-${id}\r\n`, from)) + `B-${id}\r\n`.length;
  const end = await waitFor(`E-${id}`, start);
  return consoleText
    .slice(start, end)
    .split('\r\n')
    .filter((line) => !line.includes('echo E-$(('))
    .join('\n')
    .trim();
}

let exitCode = 0;
try {
  let t = performance.now();
  await waitFor('READY-42');
  say(`guest booted in ${ms(t)}`);

  t = performance.now();
  const found = await guest(
    'for d in /sys/bus/pci/devices/*; do [ "$(cat $d/vendor):$(cat $d/device)" = 0x1af4:0x1110 ] && echo "$d irq $(cat $d/irq)" && head -3 $d/resource; done',
  );
  say(`guest finds the device (${ms(t)}):\n${found}`);

  t = performance.now();
  const uio = await guest(
    "echo '1af4 1110' > /sys/bus/pci/drivers/uio_pci_generic/new_id && cat /sys/class/uio/uio0/name && ls /dev/uio0",
  );
  say(`guest binds uio_pci_generic (${ms(t)}): ${uio.replace(/\n/g, ', ')}`);

  t = performance.now();
  const position = await guest(`devmem 0x${(BAR0 + 8).toString(16)} 32`);
  say(`guest reads IVPosition (BAR0+8): ${position} = device id ${device.id} (${ms(t)})`);

  // The host writes a greeting into shared memory; the guest reads it through BAR2, 4 bytes a devmem.
  const greeting = `Hello guest ${device.id}, from host peer ${host.id}!`.padEnd(40, ' ');
  hostMemory.set(new TextEncoder().encode(greeting), 0x100);
  t = performance.now();
  const read = await guest(
    `for o in $(seq 0 4 ${greeting.length - 4}); do v=$(devmem $((0x${(BAR2 + 0x100).toString(16)}+o)) 32); ` +
      'printf "\\x${v:8:2}\\x${v:6:2}\\x${v:4:2}\\x${v:2:2}"; done; echo',
  );
  say(`host wrote a greeting at BAR2+0x100; the guest read: "${read.trimEnd()}" (${ms(t)})`);

  // The guest rings the host: a doorbell write (peer id << 16 | vector) to BAR0+12.
  const rung = new Promise((resolve) => host.once('interrupt', resolve));
  t = performance.now();
  emulator.serial0_send(`devmem 0x${(BAR0 + 12).toString(16)} 32 ${(host.id << 16) >>> 0}\n`);
  await rung;
  say(`guest rang the host: the host peer's vector 0 fired ${ms(t)} after the command was typed`);

  // The host rings the guest: the guest waits in read(/dev/uio0) (IntrMask on first), INTx wakes it.
  await guest(
    `devmem 0x${BAR0.toString(16)} 32 0xffffffff; (dd if=/dev/uio0 bs=4 count=1 2>/dev/null | od -An -tu4; echo WOKE-$((40+2))) &`,
  );
  await sleep(500); // let dd block
  const from = consoleText.length;
  t = performance.now();
  host.ring(device.id, 0);
  await waitFor('WOKE-42', from);
  say(`host rang the guest: /dev/uio0 woke up and the guest printed its marker ${ms(t)} later`);
  say(`device counters: ${JSON.stringify(device.counters())}`);
} catch (error) {
  console.error(error);
  exitCode = 1;
} finally {
  await emulator.stop();
  await emulator.destroy();
  device.close();
  host.close();
  server.close(); // removes the socket and unlinks the shm object
  const left = [socketPath, `/dev/shm/${shm}`].filter((p) => existsSync(p));
  say(left.length ? `left behind: ${left.join(', ')}` : 'shut down: no socket or shared memory left behind');
}
process.exitCode = exitCode;
