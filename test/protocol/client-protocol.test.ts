// The client's protocol state machine (pure): QEMU's accepted sequences, every refusal with its
// code, and every fd it is handed either handed on in an event or closed — never both, never lost.
import { describe, expect, it } from 'vitest';
import { ClientProtocol } from '../../src/protocol/client-protocol.js';
import type { ClientEvent } from '../../src/protocol/client-protocol.js';
import { decodeMessage, encodeMessage } from '../../src/protocol/messages.js';

// Fake fds: numbers from 100 up; the test tracks which were closed and which were handed on.
function harness(vectors = 2, legacy = false) {
  let next = 100;
  const closed: number[] = [];
  const p = new ClientProtocol({ vectors, legacy, closeFd: (fd) => closed.push(fd) });
  const events: ClientEvent[] = [];
  const send = (value: number | bigint, withFd = false) => {
    const fd = withFd ? next++ : -1;
    events.push(...p.feed(BigInt(value), fd));
    return fd;
  };
  const handedOn = () => events.flatMap((e) => ('fd' in e ? [e.fd] : 'shmFd' in e ? [e.shmFd] : []));
  return { p, send, events, closed, handedOn, issued: () => Array.from({ length: next - 100 }, (_, i) => 100 + i) };
}

const expectCode = (fn: () => unknown, code: string) => expect(fn).toThrow(expect.objectContaining({ code }));

describe('messages', () => {
  it('are 8-byte little-endian signed integers', () => {
    expect([...encodeMessage(-1)]).toEqual([255, 255, 255, 255, 255, 255, 255, 255]);
    expect([...encodeMessage(0x0102)]).toEqual([2, 1, 0, 0, 0, 0, 0, 0]);
    expect(decodeMessage(encodeMessage(-(2n ** 63n)))).toBe(-(2n ** 63n));
    expect(() => decodeMessage(new Uint8Array(7))).toThrow(RangeError);
  });
});

describe('client protocol', () => {
  it("accepts QEMU server's connect sequence and holds setup events until the shm message", () => {
    const h = harness(2);
    h.send(0);
    h.send(5);
    h.send(1, true); // existing peer 1, vector 0
    h.send(1, true);
    h.send(5, true); // own vectors
    h.send(5, true);
    expect(h.events).toEqual([]);
    h.send(-1, true);
    expect(h.events.map((e) => e.type)).toEqual(['ready', 'peer-vector', 'peer-vector', 'own-vector', 'own-vector']);
    expect(h.events[0]).toEqual({ type: 'ready', id: 5, shmFd: 104 });
    expect(h.events[2]).toEqual({ type: 'peer-vector', peer: 1, vector: 1, fd: 101 });
    expect(h.events[4]).toEqual({ type: 'own-vector', vector: 1, fd: 103 });
  });

  it('reports joins and leaves after setup, one event per message', () => {
    const h = harness(1);
    h.send(0);
    h.send(0);
    h.send(-1, true);
    h.send(0, true);
    h.send(7, true);
    h.send(7);
    expect(h.events.slice(1)).toEqual([
      { type: 'own-vector', vector: 0, fd: 101 },
      { type: 'peer-vector', peer: 7, vector: 0, fd: 102 },
      { type: 'peer-left', peer: 7 },
    ]);
    h.send(7, true); // the id may come back, numbered from vector 0 again
    expect(h.events.at(-1)).toEqual({ type: 'peer-vector', peer: 7, vector: 0, fd: 103 });
    expect(h.closed).toEqual([]);
  });

  const refusals: [string, (h: ReturnType<typeof harness>) => void, string][] = [
    ['a wrong version', (h) => h.send(1), 'ERR_IVSHMEM_PROTOCOL_VERSION'],
    ['a version with an fd', (h) => h.send(0, true), 'ERR_IVSHMEM_PROTOCOL_VERSION'],
    [
      'an id above 65535',
      (h) => {
        h.send(0);
        h.send(65536);
      },
      'ERR_IVSHMEM_PROTOCOL_ID',
    ],
    [
      'a negative id',
      (h) => {
        h.send(0);
        h.send(-1);
      },
      'ERR_IVSHMEM_PROTOCOL_ID',
    ],
    [
      'an id with an fd',
      (h) => {
        h.send(0);
        h.send(3, true);
      },
      'ERR_IVSHMEM_PROTOCOL_ID',
    ],
    [
      'an shm message without fd',
      (h) => {
        h.send(0);
        h.send(3);
        h.send(-1);
      },
      'ERR_IVSHMEM_PROTOCOL_SHM',
    ],
    [
      'a second shm message',
      (h) => {
        h.send(0);
        h.send(3);
        h.send(-1, true);
        h.send(-1, true);
      },
      'ERR_IVSHMEM_PROTOCOL_SHM',
    ],
    [
      'more eventfds for a peer than vectors',
      (h) => {
        h.send(0);
        h.send(3);
        h.send(4, true);
        h.send(4, true);
        h.send(4, true);
      },
      'ERR_IVSHMEM_TOO_MANY_VECTORS',
    ],
    [
      'more own eventfds than vectors',
      (h) => {
        h.send(0);
        h.send(3);
        h.send(-1, true);
        h.send(3, true);
        h.send(3, true);
        h.send(3, true);
      },
      'ERR_IVSHMEM_TOO_MANY_VECTORS',
    ],
    [
      'a disconnect of itself',
      (h) => {
        h.send(0);
        h.send(3);
        h.send(-1, true);
        h.send(3);
      },
      'ERR_IVSHMEM_PROTOCOL_PEER',
    ],
    [
      'a disconnect of an unknown peer',
      (h) => {
        h.send(0);
        h.send(3);
        h.send(-1, true);
        h.send(9);
      },
      'ERR_IVSHMEM_PROTOCOL_PEER',
    ],
    [
      'a value below -1',
      (h) => {
        h.send(0);
        h.send(3);
        h.send(-2, true);
      },
      'ERR_IVSHMEM_PROTOCOL_VALUE',
    ],
    [
      'a value above 65535',
      (h) => {
        h.send(0);
        h.send(3);
        h.send(-1, true);
        h.send(65536, true);
      },
      'ERR_IVSHMEM_PROTOCOL_VALUE',
    ],
  ];

  it.each(refusals)('refuses %s and closes every fd it was handed', (_name, script, code) => {
    const h = harness(2);
    expectCode(() => script(h), code);
    // Every fd issued is either handed on in an event or closed, exactly once.
    const accounted = [...h.closed, ...h.handedOn()].sort((a, b) => a - b);
    expect(accounted).toEqual(h.issued());
  });

  it('refuses EOF during setup, closing what it held, and accepts EOF after it', () => {
    const h = harness(2);
    h.send(0);
    h.send(3);
    h.send(4, true);
    expectCode(() => h.p.end(), 'ERR_IVSHMEM_PROTOCOL_EOF');
    expect(h.closed).toEqual([100]);
    expectCode(() => h.send(4, true), 'ERR_IVSHMEM_PROTOCOL');
    expect(h.closed).toEqual([100, 101]);

    const ok = harness(1);
    ok.send(0);
    ok.send(1);
    ok.send(-1, true);
    expect(() => ok.p.end()).not.toThrow();
    expect(ok.p.phase).toBe('ready');
  });

  it('stays usable after a bad message once set up, as QEMU does', () => {
    const h = harness(1);
    h.send(0);
    h.send(2);
    h.send(-1, true);
    expectCode(() => h.send(-5, true), 'ERR_IVSHMEM_PROTOCOL_VALUE');
    expect(h.closed).toEqual([101]);
    h.send(8, true);
    expect(h.events.at(-1)).toEqual({ type: 'peer-vector', peer: 8, vector: 0, fd: 102 });
  });

  it('closes the fds of a peer that joined and left during setup', () => {
    const h = harness(1);
    h.send(0);
    h.send(2);
    h.send(6, true);
    h.send(6);
    h.send(-1, true);
    expect(h.closed).toEqual([100]);
    expect(h.events.map((e) => e.type)).toEqual(['ready', 'peer-left']);
  });

  it('speaks the legacy protocol: no version message', () => {
    const h = harness(1, true);
    h.send(4);
    h.send(-1, true);
    expect(h.events[0]).toEqual({ type: 'ready', id: 4, shmFd: 100 });
    const modern = harness(1);
    expectCode(() => modern.send(4), 'ERR_IVSHMEM_PROTOCOL_VERSION');
  });
});
