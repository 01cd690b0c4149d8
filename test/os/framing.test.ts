// The record framing on its own, with no socket: a stream of 8-byte records, each sent with any
// number of fds, read back in pieces of every size the framer allows. Every record comes back
// whole and in order, carrying the first fd sent with it; every other fd is refused exactly once;
// a record cut short by the end of the stream gives its fd back to the caller.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MESSAGE_BYTES, MessageFramer, encodeMessage } from '../../src/os/framing.js';
import type { Message } from '../../src/os/framing.js';

interface Sent {
  value: bigint;
  fds: number[];
}

const records = fc.array(
  fc.record({ value: fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), fdCount: fc.integer({ min: 0, max: 3 }) }),
  { maxLength: 40 },
);

/** Fd numbers: distinct, so each can be traced. */
function numbered(input: { value: bigint; fdCount: number }[]): Sent[] {
  let next = 100;
  return input.map(({ value, fdCount }) => ({ value, fds: Array.from({ length: fdCount }, () => next++) }));
}

/** Reads the stream as a socket would: each read starts where the last ended, takes 1..room bytes
 *  (chosen by `pick`), and gets the fds sent with the bytes it covers (a sender's fds ride on the
 *  first byte of its record). */
function readAll(stream: Uint8Array, fdsAt: Map<number, number[]>, pick: () => number, cut = stream.length) {
  const framer = new MessageFramer();
  const got: Message[] = [];
  const refused: number[] = [];
  let at = 0;
  while (at < cut) {
    const n = Math.min(1 + (pick() % framer.room), cut - at);
    framer.buffer.set(stream.subarray(at, at + n), framer.have);
    const fds: number[] = [];
    for (let i = at; i < at + n; i++) fds.push(...(fdsAt.get(i) ?? []));
    const m = framer.took(n, fds, (fd) => refused.push(fd));
    if (m !== null) got.push(m);
    at += n;
  }
  return { got, refused, leftover: framer.drop(), have: framer.have };
}

function wireOf(sent: Sent[]) {
  const stream = new Uint8Array(sent.length * MESSAGE_BYTES);
  const fdsAt = new Map<number, number[]>();
  sent.forEach((s, i) => {
    stream.set(encodeMessage(s.value), i * MESSAGE_BYTES);
    if (s.fds.length > 0) fdsAt.set(i * MESSAGE_BYTES, s.fds);
  });
  return { stream, fdsAt };
}

describe('record framing', () => {
  it('gives back every record whole, in order, with its first fd, however the stream is split', () => {
    fc.assert(
      fc.property(records, fc.array(fc.nat(), { minLength: 1 }), (input, sizes) => {
        const sent = numbered(input);
        const { stream, fdsAt } = wireOf(sent);
        let i = 0;
        const { got, refused, leftover } = readAll(stream, fdsAt, () => sizes[i++ % sizes.length]);
        expect(got.map((m) => m.value)).toEqual(sent.map((s) => s.value));
        expect(got.map((m) => m.fd)).toEqual(sent.map((s) => s.fds[0] ?? -1));
        expect(refused).toEqual(sent.flatMap((s) => s.fds.slice(1)));
        expect(leftover).toBe(-1);
      }),
      { numRuns: 300 },
    );
  });

  it('hands the fd of a record cut short by the end of the stream back to the caller, and no record for it', () => {
    fc.assert(
      fc.property(
        records.filter((r) => r.length > 0),
        fc.integer({ min: 1, max: MESSAGE_BYTES - 1 }),
        fc.nat(),
        (input, short, seed) => {
          const sent = numbered(input);
          const { stream, fdsAt } = wireOf(sent);
          const cut = stream.length - short;
          let s = seed;
          const { got, refused, leftover, have } = readAll(
            stream,
            fdsAt,
            () => (s = (s * 1103515245 + 12345) >>> 0),
            cut,
          );
          const last = sent[sent.length - 1];
          expect(got.map((m) => m.value)).toEqual(sent.slice(0, -1).map((x) => x.value));
          expect(have).toBe(0); // drop() emptied it
          expect(leftover).toBe(last.fds[0] ?? -1);
          expect(refused).toEqual(sent.flatMap((x) => x.fds.slice(1)));
        },
      ),
      { numRuns: 200 },
    );
  });

  it('refuses a read that would run past the current record, or a size that is no byte count', () => {
    const framer = new MessageFramer();
    expect(framer.took(3, [], () => {})).toBeNull();
    expect(framer.room).toBe(MESSAGE_BYTES - 3);
    for (const bad of [MESSAGE_BYTES - 2, -1, 1.5, Number.NaN]) {
      expect(() => framer.took(bad, [], () => {})).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    }
    expect(framer.have).toBe(3); // the refused reads changed nothing
  });

  it('keeps fds that arrive with no bytes for the record being assembled', () => {
    const framer = new MessageFramer();
    const refused: number[] = [];
    expect(framer.took(0, [7, 8], (fd) => refused.push(fd))).toBeNull();
    framer.buffer.set(encodeMessage(42n));
    expect(framer.took(MESSAGE_BYTES, [9], (fd) => refused.push(fd))).toEqual({ value: 42n, fd: 7 });
    expect(refused).toEqual([8, 9]);
  });
});
