// One demo peer, in a process of its own: an IvshmemDevice joined to the demo's server, with a
// VmmTransport that records interrupts as a guest's handler would see them. It sends numbered
// messages to the next peer on the ring through shared memory and a doorbell, waits for the
// acknowledgement doorbell, and reports what it saw to the parent over IPC.
import hdr from 'hdr-histogram-js';
import { REG_DOORBELL } from '../core/abi.js';
import { IvshmemDevice } from '../device/device.js';
import { enableMsix } from './driver.js';
import { checksum, mailboxOffset, VECTOR_ACK, VECTOR_MESSAGE } from './mailbox.js';
import { bucketOf, HISTOGRAM_BUCKETS } from './summary.js';
import type { PeerStats } from './summary.js';

// The ring is set up on every peer before any peer starts, so no message can arrive at a peer
// that does not yet know its mailbox.
type FromParent = { type: 'ring'; ring: number[] } | { type: 'start'; durationMs: number };

const now = () => process.hrtime.bigint();

/** How often a peer checks that the demo that started it still exists. */
const PARENT_CHECK_MS = 250;

export async function runPeer(socketPath: string, vectors: number): Promise<void> {
  // The demo process owns the server, the shm object and the socket; a peer owns nothing it would
  // have to remove. So whenever the demo goes, even by SIGKILL, the peer simply leaves: the IPC
  // channel's end tells it, and a change of parent (we were re-parented) tells it if that is missed.
  const parent = process.ppid;
  process.on('disconnect', () => process.exit(0));
  if (!process.connected || !process.send) process.exit(0);
  setInterval(() => process.ppid !== parent && process.exit(0), PARENT_CHECK_MS).unref();
  // Ctrl-C reaches the whole process group: the parent decides, and ends us.
  process.on('SIGINT', () => {});
  // A closed channel is reported by 'disconnect' above; the callback keeps a send racing it from
  // becoming an 'error' event.
  const send = (message: unknown) => process.connected && process.send?.(message, () => {});
  const oneWay = hdr.build({
    bitBucketSize: 64,
    lowestDiscernibleValue: 1,
    highestTrackableValue: 60e9,
    numberOfSignificantValueDigits: 3,
  });
  const roundTrip = hdr.build({
    bitBucketSize: 64,
    lowestDiscernibleValue: 1,
    highestTrackableValue: 60e9,
    numberOfSignificantValueDigits: 3,
  });
  let interrupts = 0;
  const buckets = new Array<number>(HISTOGRAM_BUCKETS).fill(0);
  let onInterrupt: (vector: number) => void = () => {};
  const device = await IvshmemDevice.create({
    mode: 'doorbell',
    vectors,
    server: socketPath,
    transport: {
      setIrqLevel() {},
      sendMsi: (_address, _data, vector) => {
        interrupts++;
        onInterrupt(vector);
      },
    },
  }).catch((err: unknown) => {
    // The demo went away while we joined, taking its server with it: not this peer's failure.
    if (!process.connected || process.ppid !== parent) process.exit(0);
    throw err;
  });
  enableMsix(device, vectors);
  send({ type: 'ready', id: device.id });

  let sent = 0;
  let received = 0;
  let acked = 0;
  let corrupt = 0;
  let running = false;
  let lastSent = 0n;
  let next = -1; // the peer we send to
  let previous = -1; // the peer we receive from, and acknowledge
  let mySlot = -1;
  let nextSlot = -1;
  const expectedSeq = new Map<number, number>();

  const ring = (peer: number, vector: number) => device.mmioWrite(0, REG_DOORBELL, 4, (peer << 16) | vector);
  const sendOne = () => {
    sent++;
    lastSent = now();
    const lo = Number(lastSent & 0xffffffffn);
    const hi = Number(lastSent >> 32n);
    const at = mailboxOffset(nextSlot);
    device.mmioWrite(2, at, 4, sent);
    device.mmioWrite(2, at + 4, 4, device.id);
    device.mmioWrite(2, at + 8, 4, lo);
    device.mmioWrite(2, at + 12, 4, hi);
    device.mmioWrite(2, at + 16, 4, checksum(sent, device.id, lo, hi));
    ring(next, VECTOR_MESSAGE);
  };

  onInterrupt = (vector) => {
    const t = now();
    if (vector === VECTOR_MESSAGE) {
      const at = mailboxOffset(mySlot);
      const seq = device.mmioRead(2, at, 4);
      const from = device.mmioRead(2, at + 4, 4);
      const lo = device.mmioRead(2, at + 8, 4);
      const hi = device.mmioRead(2, at + 12, 4);
      if (device.mmioRead(2, at + 16, 4) !== checksum(seq, from, lo, hi) || seq !== (expectedSeq.get(from) ?? 1)) {
        corrupt++;
      } else {
        received++;
        expectedSeq.set(from, seq + 1);
        const ns = Number(t - ((BigInt(hi) << 32n) | BigInt(lo)));
        oneWay.recordValue(ns);
        buckets[bucketOf(ns)]++;
      }
      ring(previous, VECTOR_ACK);
    } else if (vector === VECTOR_ACK) {
      acked++;
      roundTrip.recordValue(Number(t - lastSent));
      if (running) sendOne();
    }
  };

  const report = (type: 'progress' | 'done'): PeerStats & { type: string } => {
    const c = device.counters();
    return {
      type,
      id: device.id,
      sent,
      received,
      acked,
      corrupt,
      interrupts,
      doorbellsSent: c.doorbellsSent,
      doorbellsDropped: c.doorbellsDropped.noPeer + c.doorbellsDropped.noVector,
      oneWay: type === 'done' ? hdr.encodeIntoCompressedBase64(oneWay) : '',
      roundTrip: type === 'done' ? hdr.encodeIntoCompressedBase64(roundTrip) : '',
      buckets,
    };
  };
  const progress = setInterval(() => send(report('progress')), 200);

  const finish = () => {
    running = false;
    clearInterval(progress);
    // Let the last message in flight be acknowledged, then report, and leave once the report is
    // written (leaving earlier could cut it off).
    setTimeout(() => {
      const done = report('done');
      device.close();
      if (process.connected) process.send?.(done, () => process.exit(0));
      else process.exit(0);
    }, 100);
  };

  process.on('message', (m: FromParent) => {
    if (m.type === 'ring') {
      const slot = m.ring.indexOf(device.id);
      mySlot = slot;
      nextSlot = (slot + 1) % m.ring.length;
      next = m.ring[nextSlot];
      previous = m.ring[(slot + m.ring.length - 1) % m.ring.length];
      send({ type: 'ring-ready' });
    } else if (m.type === 'start') {
      running = true;
      setTimeout(finish, m.durationMs);
      sendOne();
    }
  });
}
