// The browser entry without a browser: dist/web.js names nothing of Node's, a WebDevice refuses
// what only Node can give (server sockets, shm names, hand-overs) and bad input with codes, a
// page that is not cross-origin isolated gets a coded refusal instead of a ReferenceError, and two
// WebDevices in one directory go on ringing each other whatever a third, broken peer does.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { PeerDirectory, WebDevice } from '../../src/web.js';
import type { PortLike, VmmTransport } from '../../src/web.js';
import { codeOf } from '../support/error-code.js';
import { until } from '../support/until.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BUNDLE = `${ROOT}dist/web.js`;

const closers: (() => void)[] = [];
afterEach(() => {
  for (const close of closers.splice(0).reverse()) close();
  vi.unstubAllGlobals();
});

function transport(interrupts: number[] = []): VmmTransport {
  return { setIrqLevel() {}, sendMsi: (_address, _data, vector) => void interrupts.push(vector) };
}

async function refusal(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => 'no error',
    (err: { code?: unknown }) => err.code,
  );
}

describe('dist/web.js', () => {
  it('imports nothing of Node: no node: specifier, no require, no process', () => {
    if (!existsSync(BUNDLE)) execFileSync(process.execPath, ['scripts/bundle.mjs'], { cwd: ROOT });
    const text = readFileSync(BUNDLE, 'utf8');
    expect(text.length).toBeGreaterThan(10_000);
    expect(text.match(/["'`]node:[a-z_]+["'`]/g) ?? []).toEqual([]);
    expect(text.match(/\brequire\(\s*["']/g) ?? []).toEqual([]);
    expect(text.match(/\bprocess\.(env|versions|nextTick)/g) ?? []).toEqual([]);
    // The core is embedded (a few KiB, far below Chromium's 8 MB limit on synchronous compiles).
    expect(text).toMatch(/WebAssembly\.Module\(/);
  });
});

describe('WebDevice and PeerDirectory, as a page uses them', () => {
  it('refuses bad input with codes', async () => {
    const directory = new PeerDirectory({ vectors: 1, size: 4096 });
    closers.push(() => directory.close());
    expect(codeOf(() => new PeerDirectory({ size: 1000 }))).toBe('ERR_IVSHMEM_INVALID_SIZE');
    expect(codeOf(() => new PeerDirectory({ memory: new ArrayBuffer(4096) as unknown as SharedArrayBuffer }))).toBe(
      'ERR_IVSHMEM_INVALID_OPTION',
    );
    const t = transport();
    const port = directory.connect();
    closers.push(() => port.close());
    for (const options of [
      { mode: 'doorbell', directory: port, transport: t, server: '/tmp/ivshmem_socket' },
      { mode: 'doorbell', directory: port, transport: t, legacy: true },
      { mode: 'plain', memory: { shm: 'x' }, transport: t },
      { mode: 'doorbell', directory: {}, transport: t },
      { mode: 'doorbell', directory: port, transport: t, memory: new SharedArrayBuffer(4096) },
    ]) {
      expect(await refusal(WebDevice.create(options as never))).toBe('ERR_IVSHMEM_INVALID_OPTION');
    }
    expect(await refusal(WebDevice.create({ memory: new ArrayBuffer(48), transport: t }))).toBe(
      'ERR_IVSHMEM_INVALID_SIZE',
    );
    expect(await refusal(WebDevice.create(null as never))).toBe('ERR_IVSHMEM_INVALID_OPTION');
  });

  it('says a page must be cross-origin isolated when SharedArrayBuffer is missing', () => {
    vi.stubGlobal('SharedArrayBuffer', undefined);
    expect(codeOf(() => new PeerDirectory())).toBe('ERR_IVSHMEM_NOT_ISOLATED');
  });

  it('a plain WebDevice on a SharedArrayBuffer shows the buffer as BAR2', async () => {
    const memory = new SharedArrayBuffer(4096);
    const device = await WebDevice.create({ memory, transport: transport() });
    closers.push(() => device.close());
    device.mmioWrite(2, 8, 4, 0x1234abcd);
    expect(new Uint32Array(memory)[2]).toBe(0x1234abcd);
    expect(device.directory).toBeUndefined();
    device.close();
    expect(device.closed).toBe(true);
    expect(codeOf(() => device.mmioRead(2, 8, 4))).toBe('ERR_IVSHMEM_CLOSED');
  });

  it('keeps two peers ringing each other while a third is fed a bad message or loses its port mid-join', async () => {
    const directory = new PeerDirectory({ vectors: 1, size: 4096 });
    closers.push(() => directory.close());
    const got: number[][] = [[], []];
    const devices = await Promise.all(
      got.map((interrupts) =>
        WebDevice.create({ mode: 'doorbell', directory: directory.connect(), transport: transport(interrupts) }),
      ),
    );
    for (const d of devices) closers.push(() => d.close());
    for (const d of devices) {
      d.configWrite(0x04, 2, 0x0006);
      d.configWrite(0x42, 2, 0x8000);
      d.mmioWrite(1, 12, 4, 0);
    }
    const ring = (from: WebDevice, to: WebDevice) => from.mmioWrite(0, 0x0c, 4, to.id << 16);

    // A directory of the wrong shape: its first message is no message of the protocol.
    const wrong = new MessageChannel();
    closers.push(() => wrong.port1.close());
    wrong.port1.postMessage({ type: 'version', version: 0 });
    wrong.port1.postMessage({ type: 'id', id: 'seven' });
    const badShape = refusal(
      WebDevice.create({ mode: 'doorbell', directory: wrong.port2 as unknown as PortLike, transport: transport() }),
    );
    // A directory that closes the port after the version.
    const cut = new MessageChannel();
    cut.port1.postMessage({ type: 'version', version: 0 });
    const midJoin = refusal(
      WebDevice.create({ mode: 'doorbell', directory: cut.port2 as unknown as PortLike, transport: transport() }),
    );
    cut.port1.close();
    expect(await badShape).toBe('ERR_IVSHMEM_PROTOCOL_ID');
    expect(await midJoin).toBe('ERR_IVSHMEM_PROTOCOL_EOF');

    ring(devices[0], devices[1]);
    ring(devices[1], devices[0]);
    await until(() => got[0].length === 1 && got[1].length === 1, 'both peers interrupted once', 2000);
    expect(directory.peerIds).toEqual([devices[0].id, devices[1].id]);

    // A peer that leaves is announced; the other's doorbells to it go nowhere, counted as such.
    devices[1].close();
    await until(() => devices[0].directory!.peers.size === 0, 'peer 1 announced as gone', 2000);
    ring(devices[0], devices[1]);
    expect(devices[0].counters().doorbellsDropped.noPeer).toBe(1);
  });
});
