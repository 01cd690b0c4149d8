// One peer of the browser demo, in a Web Worker: a WebDevice joined to the page's PeerDirectory
// and driven as a guest driver would drive it (MSI-X on; vector 0 says "a message for you",
// vector 1 "your message arrived"). A sending peer writes numbered messages, one at a time, into
// the mailbox it shares with the next peer by id (round the ring of peers it knows) and rings it;
// the receiver checks each message, acknowledges it in the mailbox and rings back; the round trip
// is timed on the sender's clock. Sending starts once every peer has joined and every device has
// heard of all the others (the page gathers that and says 'send'), so that each peer has one
// sender and each doorbell makes one interrupt (rings of one vector that come together are taken as one, as an eventfd's are). When
// a peer leaves, the ring closes over the gap. Every 100 ms, and when done, the worker reports.
import { IvshmemError, WebDevice, coreAbi } from '../src/web.js';
import { enableMsix } from '../src/demo/driver.js';
import { VECTOR_ACK, VECTOR_MESSAGE, checksum, pairMailboxOffset } from '../src/demo/mailbox.js';
import { deviceFigures } from './messages.js';
import type { FromPeer, PeerReport, StartPeer, ToPeer } from './messages.js';

const REPORT_MS = 100;
// Byte offsets in a pair mailbox (src/demo/mailbox.ts).
const SEQ = 0;
const FROM = 4;
const TO = 8;
const NUMBER = 12;
const SUM = 16;
const ACK = 20;

const scope = self as unknown as {
  postMessage(message: FromPeer): void;
  addEventListener(type: 'message', listener: (event: MessageEvent<ToPeer>) => void): void;
};
const post = (message: FromPeer) => scope.postMessage(message);
let go: (peers: number[]) => void = () => {};
let send: () => void = () => {};

scope.addEventListener('message', (event) => {
  if (event.data.type === 'go') go(event.data.peers);
  if (event.data.type === 'send') send();
  if (event.data.type !== 'start') return;
  run(event.data).catch((err: unknown) => {
    const e = err instanceof IvshmemError ? err : new IvshmemError('ERR_IVSHMEM_PROTOCOL', String(err));
    post({ type: 'failed', code: e.code, message: e.message });
  });
});

async function run(start: StartPeer): Promise<void> {
  let interrupts = 0;
  const pending: number[] = [];
  let handling = false;
  const device = await WebDevice.create({
    mode: 'doorbell',
    vectors: 2,
    directory: start.port,
    transport: {
      setIrqLevel() {},
      // An interrupt is handled after the device has delivered it, not inside its delivery.
      sendMsi: (_address, _data, vector) => {
        interrupts++;
        pending.push(vector);
        if (!handling) {
          handling = true;
          queueMicrotask(drain);
        }
      },
    },
  });
  const directory = device.directory!;
  const me = device.id;
  enableMsix(device, 2);
  let everyone: number[] | undefined;
  let started = false; // once started, a peer that leaves does not stop us
  let knowsAll = false;
  const ready = () => started;
  // Tells the page, once, that this device has heard of every peer that joined.
  const checkKnown = () => {
    if (knowsAll || everyone === undefined || !everyone.every((id) => id === me || directory.peers.has(id))) return;
    knowsAll = true;
    post({ type: 'knows-all', id: me });
  };
  go = (peers) => {
    everyone = peers;
    checkKnown();
  };
  send = () => {
    started = true;
    sendNext();
  };
  post({ type: 'joined', id: me });

  const r32 = (at: number) => device.mmioRead(2, at, 4);
  const w32 = (at: number, value: number) => device.mmioWrite(2, at, 4, value);
  const ring = (peer: number, vector: number) =>
    device.mmioWrite(0, coreAbi.REG_DOORBELL, 4, (peer << coreAbi.DOORBELL_PEER_SHIFT) | vector);

  let sent = 0;
  let acked = 0;
  let received = 0;
  let corrupt = 0;
  let lostToLeave = 0;
  let warmup = start.warmup;
  let samples: number[] = [];
  const leftSeen: number[] = [];
  const nextSeq = new Map<number, number>(); // per receiver
  const lastSeq = new Map<number, number>(); // per sender
  let out: { to: number; seq: number; t0: number } | undefined;

  const successor = (): number | undefined => {
    const ids = [...directory.peers.keys()].sort((a, b) => a - b);
    return ids.find((id) => id > me) ?? ids[0];
  };
  const finished = () => start.count > 0 && sent >= start.count && out === undefined;

  const sendNext = () => {
    if (!start.send || !ready() || out !== undefined || (start.count > 0 && sent >= start.count)) return;
    const to = successor();
    if (to === undefined) return; // alone: a joining peer's announcement starts us again
    const seq = (nextSeq.get(to) ?? 0) + 1;
    nextSeq.set(to, seq);
    const number = ++sent;
    const at = pairMailboxOffset(me, to);
    w32(at + FROM, me);
    w32(at + TO, to);
    w32(at + NUMBER, number);
    w32(at + SUM, checksum(seq, me, to, number));
    w32(at + SEQ, seq);
    out = { to, seq, t0: performance.now() };
    ring(to, VECTOR_MESSAGE);
  };

  // Every mailbox addressed to us: a sequence number that moved is a new message.
  const receive = () => {
    for (const from of directory.peers.keys()) {
      const at = pairMailboxOffset(from, me);
      const seq = r32(at + SEQ);
      const last = lastSeq.get(from) ?? 0;
      if (seq === last) continue;
      lastSeq.set(from, seq);
      const number = r32(at + NUMBER);
      const intact =
        seq === last + 1 &&
        r32(at + FROM) === from &&
        r32(at + TO) === me &&
        r32(at + SUM) === checksum(seq, from, me, number);
      if (intact) received++;
      else corrupt++;
      w32(at + ACK, seq);
      ring(from, VECTOR_ACK);
    }
  };

  const acknowledged = () => {
    if (out === undefined || r32(pairMailboxOffset(me, out.to) + ACK) !== out.seq) return;
    const ns = Math.round((performance.now() - out.t0) * 1e6);
    if (warmup > 0) warmup--;
    else samples.push(ns);
    acked++;
    out = undefined;
    sendNext();
    if (finished()) report();
  };

  function drain() {
    while (pending.length > 0) {
      if (pending.shift() === VECTOR_MESSAGE) receive();
      else acknowledged();
    }
    handling = false;
  }

  directory.on('peer', () =>
    queueMicrotask(() => {
      checkKnown();
      receive(); // a peer that joins later may have written to us before we heard of it
      sendNext();
    }),
  );
  directory.on('peer-left', (peer) => {
    leftSeen.push(peer);
    // After the device has dropped the peer's routes: the next message goes to the new successor.
    queueMicrotask(() => {
      if (out?.to === peer) {
        lostToLeave++;
        out = undefined;
      }
      sendNext();
    });
  });

  function report() {
    const message: PeerReport = {
      type: 'report',
      id: me,
      kind: 'worker',
      sends: start.send,
      sent,
      acked,
      received,
      corrupt,
      lostToLeave,
      interrupts,
      ...deviceFigures(device.counters(), directory.peers.keys(), leftSeen),
      done: finished(),
      samples,
    };
    samples = [];
    post(message);
  }
  setInterval(report, REPORT_MS);
  sendNext();
}
