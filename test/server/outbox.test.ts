// A client's outbox on a real socket pair whose reader stops reading: messages go straight out
// while the socket takes them, then wait in order; the watcher is asked for writability exactly
// while something waits; the limit names the reason to drop; a flush after the reader catches up
// delivers everything in order; forget() takes messages out with the counters kept right.
import { afterEach, describe, expect, it } from 'vitest';
import { UnixSocket } from '../../src/os/unix-socket.js';
import { Outbox } from '../../src/server/outbox.js';
import type { OutboxCounters } from '../../src/server/outbox.js';

const sockets: UnixSocket[] = [];
afterEach(() => {
  for (const s of sockets.splice(0)) s.close();
});

function setup(limit = Infinity) {
  const [writer, reader] = UnixSocket.pair();
  sockets.push(writer, reader);
  const counters: OutboxCounters = { messagesSent: 0, messagesQueued: 0, peakQueue: 0, slowReaderDrops: 0 };
  const watching: boolean[] = [];
  const outbox = new Outbox(writer, counters, (on) => watching.push(on), [], limit);
  return { reader, counters, watching, outbox };
}

// Reads every message the socket holds now.
function drain(reader: UnixSocket): bigint[] {
  const values: bigint[] = [];
  for (let m = reader.receive(); m !== null; m = reader.receive()) values.push(m.value);
  return values;
}

describe('server outbox', () => {
  it('queues what a full socket cannot take, in order, and flushes it when the reader catches up', () => {
    const { reader, counters, watching, outbox } = setup();
    let n = 0n;
    while (outbox.length === 0) expect(outbox.send(n++, -1, 10)).toBeNull();
    const direct = n - 1n; // the messages the socket took before it was full
    expect(counters.messagesSent).toBe(Number(direct));
    expect(watching, 'asks for writability once').toEqual([true]);
    for (let i = 0; i < 5; i++) expect(outbox.send(n++, -1, 10)).toBeNull();
    expect([outbox.length, counters.messagesQueued, counters.peakQueue]).toEqual([6, 6, 6]);
    expect(outbox.stallLeft(Date.now(), 5000)).toBeGreaterThan(4000);
    expect(outbox.stallLeft(Date.now() + 6000, 5000)).toBeLessThanOrEqual(0);

    const received: bigint[] = [];
    while (outbox.length > 0) {
      received.push(...drain(reader));
      expect(outbox.flush(10, true)).toBeNull();
    }
    received.push(...drain(reader));
    expect(received).toEqual(Array.from({ length: Number(n) }, (_, i) => BigInt(i)));
    expect([counters.messagesSent, counters.messagesQueued]).toEqual([Number(n), 0]);
    expect(watching, 'and stops asking once the queue is out').toEqual([true, false]);
  });

  it('names the reason to drop a client whose queue reaches its limit, and counts it', () => {
    const { counters, outbox } = setup(3);
    let n = 0n;
    while (outbox.length === 0) outbox.send(n++, -1, 3);
    outbox.send(n++, -1, 3);
    outbox.send(n++, -1, 3);
    expect(outbox.length).toBe(3);
    expect(outbox.send(n, -1, 3)).toBe('the client stopped reading: more than 3 messages queued');
    expect(counters.slowReaderDrops).toBe(1);
    outbox.clear();
    expect([outbox.length, counters.messagesQueued]).toEqual([0, 0]);
  });

  it('openLimit bounds what comes after a setup still queued; forget() takes messages out', () => {
    const { counters, outbox } = setup();
    let n = 0n;
    while (outbox.length === 0) outbox.send(n++, -1, 2);
    for (let i = 0; i < 3; i++) outbox.send(1_000_000n + BigInt(i), -1, 2);
    outbox.openLimit(2);
    expect(outbox.limit, 'two more than the setup still waiting').toBe(6);
    expect(outbox.forget((m) => m.value >= 1_000_000n)).toBe(3);
    expect([outbox.length, counters.messagesQueued]).toEqual([1, 1]);
    expect(outbox.snapshot().map((m) => m.value)).toEqual([n - 1n]);
  });

  it('a send on a socket the reader closed is a reason to drop, not a throw', () => {
    const { reader, outbox } = setup();
    reader.close();
    expect(outbox.send(1n, -1, 10)).toMatch(/^send failed: /);
  });
});
