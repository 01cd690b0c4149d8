// The browser demo's v86 peer, in a Web Worker: a Linux guest (the cached Debian kernel and
// busybox, see scripts/prepare-v86-guest.mjs) booted in v86, with a WebDevice in intx mode as its
// PCI function (V86Transport), joined to the page's PeerDirectory like every other peer. The guest's
// own driver (guest-script.ts) does the device work: it wakes on INTx through /dev/uio0, checks the
// message in shared memory, acknowledges it and rings back. This worker only boots the machine,
// tells the guest which peers may write to it, and turns its console lines into the demo's reports.
// It never sends: the guest is a receiver on the ring.
import { IvshmemError, V86Transport, WebDevice } from '../src/web.js';
import type { V86Emulator } from '../src/web.js';
import { guestMachine } from '../scripts/v86-guest-machine.mjs';
import type { GuestFileName } from '../scripts/v86-guest-machine.mjs';
import { ARMED_MARKER, installDriver, parseReceipts, startDriver } from './guest-script.js';
import { deviceFigures } from './messages.js';
import type { FromPeer, PeerReport, StartPeer, ToPeer } from './messages.js';

const REPORT_MS = 200;
const CONSOLE_TAIL = 6000;
// The shell's terminal queries (ESC [ 6 n) are not for a reader of the console.
const TERMINAL_CONTROL = new RegExp(`${String.fromCharCode(0x1b)}\\[[0-9;?]*[A-Za-z]`, 'g');
const GUEST_FILES: GuestFileName[] = ['bios.bin', 'bzImage', 'busybox', 'uio.ko', 'uio_pci_generic.ko'];

interface V86Instance extends V86Emulator {
  add_listener(event: string, listener: (value: never) => void): void;
  run(): void;
  serial0_send(text: string): void;
}

const scope = self as unknown as {
  postMessage(message: FromPeer): void;
  addEventListener(type: 'message', listener: (event: MessageEvent<ToPeer>) => void): void;
};
const post = (message: FromPeer) => scope.postMessage(message);
// The page says 'go' once every peer has joined, which may be while the guest is still loading.
let go: (peers: number[]) => void = () => {};
const peersKnown = new Promise<number[]>((resolve) => (go = resolve));

scope.addEventListener('message', (event) => {
  if (event.data.type === 'go') go(event.data.peers);
  if (event.data.type !== 'start') return;
  run(event.data).catch((err: unknown) => {
    const e = err instanceof IvshmemError ? err : new IvshmemError('ERR_IVSHMEM_V86', String(err));
    post({ type: 'failed', code: e.code, message: e.message });
  });
});

async function fetchBytes(url: string): Promise<Uint8Array> {
  const response = await fetch(url);
  if (!response.ok) {
    throw new IvshmemError(
      'ERR_IVSHMEM_V86',
      `${url}: ${response.status} ${(await response.text()).trim()} (the v86 guest is prepared by node scripts/prepare-v86-guest.mjs)`,
    );
  }
  return new Uint8Array(await response.arrayBuffer());
}

async function run(start: StartPeer): Promise<void> {
  const transport = new V86Transport();
  const device = await WebDevice.create({ mode: 'intx', vectors: 2, directory: start.port, transport });
  const directory = device.directory!;
  const me = device.id;
  post({ type: 'joined', id: me });

  const files = Object.fromEntries(
    await Promise.all(GUEST_FILES.map(async (name) => [name, await fetchBytes(`/guest/${name}`)] as const)),
  );
  // v86 is loaded as the package ships it (its module build), not bundled.
  const libv86 = '/v86/libv86.mjs';
  const { V86 } = (await import(/* webpackIgnore: true */ libv86)) as { V86: new (o: object) => V86Instance };
  const emulator = new V86(
    guestMachine({
      files: files as Record<GuestFileName, Uint8Array>,
      wasmPath: '/v86/v86.wasm',
      extraInit: installDriver({ bar0: transport.bar0Address, bar2: transport.bar2Address }),
    }),
  );
  let text = '';
  let consumed = 0;
  let received = 0;
  let corrupt = 0;
  let interrupts = 0;
  const leftSeen: number[] = [];
  directory.on('peer-left', (peer) => leftSeen.push(peer));
  emulator.add_listener('serial0-output-byte', (byte: number) => {
    text += String.fromCharCode(byte);
  });
  emulator.add_listener('emulator-loaded', () => {
    transport.attach(emulator, device);
    emulator.run();
  });
  const seen = (marker: string) =>
    new Promise<void>((resolve) => {
      const check = () => (text.includes(marker) ? resolve() : setTimeout(check, 50));
      check();
    });

  const report = () => {
    const end = text.lastIndexOf('\n') + 1;
    for (const r of parseReceipts(text.slice(consumed, end))) {
      if (r.intact) received++;
      else corrupt++;
      interrupts = r.interrupts;
    }
    consumed = Math.max(consumed, end);
    const message: PeerReport = {
      type: 'report',
      id: me,
      kind: 'v86',
      sends: false,
      sent: 0,
      acked: 0,
      received,
      corrupt,
      lostToLeave: 0,
      interrupts,
      ...deviceFigures(device.counters(), directory.peers.keys(), leftSeen),
      done: false,
      samples: [],
      console: text.slice(-CONSOLE_TAIL).replace(TERMINAL_CONTROL, ''),
    };
    post(message);
  };
  setInterval(report, REPORT_MS);

  await seen('READY-42');
  const everyone = await peersKnown;
  const known = () => everyone.every((id) => id === me || directory.peers.has(id));
  while (!known()) await new Promise((r) => setTimeout(r, 20));
  emulator.serial0_send(`${startDriver(me, everyone)}\n`);
  await seen(ARMED_MARKER);
  post({ type: 'knows-all', id: me });
}
