// What the demo page and its peer workers say to each other (the directory's own messages travel
// on the port the page hands each worker, not here).
import type { DeviceCounters } from '../src/device/metrics.js';

/** Page → worker, once: the directory port and this peer's part. */
export interface StartPeer {
  type: 'start';
  port: MessagePort;
  /** Whether this peer sends messages (every peer acknowledges what it receives). */
  send: boolean;
  /** Messages to send before stopping; 0 sends until the worker ends. */
  count: number;
  /** Round trips to leave out of the samples at the start (the JIT warming up). */
  warmup: number;
}

/** Page → worker, once every peer has joined: who they all are. No peer sends before it knows them all. */
export interface Go {
  type: 'go';
  peers: number[];
}

/**
 * Page → worker, once every peer has said it knows all the others: start sending. Until then a
 * peer could still be hearing of a sender while that sender's first ring waits in its signals;
 * taking the message early then lets the next ring fold into the same interrupt.
 */
export interface Send {
  type: 'send';
}

export type ToPeer = StartPeer | Go | Send;

/** What a peer has counted so far; samples are the round trips since its last report, in ns. */
export interface PeerReport {
  type: 'report';
  id: number;
  /** A JavaScript peer (peer-worker.ts) or a Linux guest in v86 (guest-worker.ts). */
  kind: 'worker' | 'v86';
  /** This peer sends (see StartPeer.send). */
  sends: boolean;
  sent: number;
  acked: number;
  received: number;
  corrupt: number;
  /** Messages whose receiver left before acknowledging them. */
  lostToLeave: number;
  /** Interrupts the worker's transport was asked to deliver (sendMsi calls). */
  interrupts: number;
  /** The device's own counters. */
  doorbellsSent: number;
  doorbellsDropped: number;
  interruptsDelivered: number;
  /** The peers this device knows of now. */
  peers: number[];
  /** The peers it heard leave. */
  leftSeen: number[];
  /** It has sent its `count` and had them all acknowledged (or lost). */
  done: boolean;
  samples: number[];
  /** The guest's console, its last few KB (v86 peers only). */
  console?: string;
}

/** The part of a report every kind of peer fills in the same way, from its device and directory. */
export function deviceFigures(
  c: DeviceCounters,
  peers: Iterable<number>,
  leftSeen: Iterable<number>,
): Pick<PeerReport, 'doorbellsSent' | 'doorbellsDropped' | 'interruptsDelivered' | 'peers' | 'leftSeen'> {
  return {
    doorbellsSent: c.doorbellsSent,
    doorbellsDropped: c.doorbellsDropped.noPeer + c.doorbellsDropped.noVector,
    interruptsDelivered: c.interruptsDelivered,
    peers: [...peers],
    leftSeen: [...leftSeen],
  };
}

export type FromPeer =
  | { type: 'joined'; id: number }
  | { type: 'knows-all'; id: number }
  | PeerReport
  | { type: 'failed'; code: string; message: string };
