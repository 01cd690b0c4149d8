// One v86 Linux guest with our intx device joined to an ivshmem server, in its own process, driven
// by its parent over IPC (test/monitors/v86-peers.test.ts). Plain JavaScript: it runs the library's esbuild
// bundle (dist/index.js), as an application would.
//
//   node v86-peer-child.mjs SERVER_SOCKET            (spawned with an 'ipc' channel)
//
// Child → parent: { type: 'ready', id } once the guest's shell is up, then one answer per
// request: { seq, ok: true, out } or { seq, ok: false, error }; { type: 'fatal', error } if the boot
// fails. Parent → child requests, each with a seq:
//   { op: 'run', command, timeoutMs }   a shell command; out = what it printed
//   { op: 'waitFor', text, timeoutMs }  until the console shows text; out = the console's tail
//   { op: 'output' }                    out = the whole console output so far
//   { op: 'waitPeer', peer, timeoutMs } until the device knows peer's vectors
//   { op: 'stop' }                      stops the guest and closes the device; the child exits
// The child also exits when its parent goes away (IPC disconnect) and after a hard lifetime.

const LIFETIME_MS = 180_000;
const root = new URL('../../', import.meta.url);
const socketPath = process.argv[2];
if (!socketPath || typeof process.send !== 'function') {
  console.error('usage: node v86-peer-child.mjs SERVER_SOCKET (with an IPC channel)');
  process.exit(2);
}
setTimeout(() => {
  console.error(`v86-peer-child: still running after ${LIFETIME_MS} ms, exiting`);
  process.exit(3);
}, LIFETIME_MS).unref();

const { IvshmemDevice, V86Transport } = await import(new URL('dist/index.js', root).href);
const { guestEmulatorOptions } = await import(new URL('scripts/v86-guest-options.mjs', root).href);
const { V86 } = await import('v86');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let device;
let emulator;
let text = '';
let stopping;
let stopRequested = false;

async function stop() {
  stopping ??= (async () => {
    if (emulator) {
      await emulator.stop();
      await emulator.destroy();
    }
    device?.close();
  })();
  return stopping;
}

async function waitFor(marker, ms, from = 0) {
  const end = Date.now() + ms;
  while (text.indexOf(marker, from) < 0) {
    if (Date.now() > end)
      throw new Error(`the guest never printed ${marker}; its console ended with:\n${text.slice(-1500)}`);
    await sleep(20);
  }
}

// The parent went away: nothing is left to report to.
process.on('disconnect', () => {
  const code = stopRequested ? 0 : 1;
  stop().finally(() => process.exit(code));
  setTimeout(() => process.exit(code), 2000).unref();
});

try {
  const transport = new V86Transport();
  device = await IvshmemDevice.create({ mode: 'intx', vectors: 1, server: socketPath, transport });
  emulator = new V86(guestEmulatorOptions());
  emulator.add_listener('serial0-output-byte', (byte) => {
    text += String.fromCharCode(byte);
  });
  emulator.add_listener('emulator-loaded', () => {
    transport.attach(emulator, device);
    emulator.run();
  });
  await waitFor('READY-42', 120_000);
  process.send({ type: 'ready', id: device.id });
} catch (error) {
  process.send({ type: 'fatal', error: String(error?.stack ?? error) });
  await stop().catch(() => {});
  process.exit(1);
}

let marker = 1000;
const handlers = {
  async run({ command, timeoutMs = 30_000 }) {
    const id = marker++;
    const from = text.length;
    emulator.serial0_send(`${command}\necho END-$((${id}+0))\n`);
    await waitFor(`END-${id}`, timeoutMs, from);
    return text.slice(from, text.indexOf(`END-${id}`, from));
  },
  async waitFor({ text: wanted, timeoutMs = 30_000 }) {
    await waitFor(wanted, timeoutMs);
    return text.slice(-4000);
  },
  async output() {
    return text;
  },
  async waitPeer({ peer, timeoutMs = 10_000 }) {
    const end = Date.now() + timeoutMs;
    while (device.peerVectors(peer) === 0) {
      if (Date.now() > end) throw new Error(`peer ${peer} never appeared (device ${device.id})`);
      await sleep(10);
    }
    return '';
  },
  async stop() {
    stopRequested = true;
    await stop();
    setImmediate(() => process.disconnect());
    return '';
  },
};

process.on('message', async (request) => {
  try {
    const handler = handlers[request.op];
    if (!handler) throw new Error(`unknown op ${request.op}`);
    process.send({ seq: request.seq, ok: true, out: await handler(request) });
  } catch (error) {
    process.send({ seq: request.seq, ok: false, error: String(error?.message ?? error) });
  }
});
