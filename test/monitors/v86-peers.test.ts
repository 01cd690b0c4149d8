// v86 guests talking to other kinds of peers through our server:
// (a) a Linux guest in v86 (our intx device, this process) rings a real QEMU's ivshmem-doorbell;
//     the QEMU runs paused under qtest with MSI-X on and its vector masked, so the ring shows up as
//     the vector's pending bit in the PBA (as in interop/qemu-doorbell.test.ts);
// (b) two v86 guests, each in its own process (test/support/v86-peer-child.mjs, running the
//     library's bundle dist/index.js), pass a message: guest A writes it into shared memory with
//     devmem and rings guest B, which is blocked in read(/dev/uio0), wakes, reads it and prints it.
// Boots take 11–14 s, about 25 s when two run at once: the limits below (60 + 85 s, under 150 s for
// the file) leave room for a loaded machine. Everything a test starts is stopped afterwards,
// killed if it does not stop.
import { execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { serverSuite } from '../support/server-suite.js';
import { setUpQemuDoorbell, until } from '../support/qemu-peer.js';
import { IvshmemDevice } from '../../src/device/device.js';
import { V86Transport } from '../../src/monitors/v86/v86-transport.js';
import { DEFAULT_QEMU, QTest, qemuUnavailableReason } from '../support/qtest.js';
import { bootGuest, v86Unavailable } from '../support/v86-guest.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CHILD = fileURLToPath(new URL('../support/v86-peer-child.mjs', import.meta.url));
const QEMU = process.env.QEMU_SYSTEM_X86_64 ?? DEFAULT_QEMU;

const v86Missing = await v86Unavailable();
const qemuMissing = v86Missing === null ? qemuUnavailableReason(QEMU) : null;
if (v86Missing !== null) console.warn(`monitors/v86-peers.test.ts: skipping the v86 peer tests: ${v86Missing}`);
if (qemuMissing !== null) console.warn(`monitors/v86-peers.test.ts: skipping the v86 → QEMU test: ${qemuMissing}`);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---- (a): the QEMU side, set up over qtest as firmware and driver would ----

// ---- (b): guests in child processes ----

interface ChildPeer {
  name: string;
  /** The device's id, once the guest's shell is up. */
  ready: Promise<{ id: number }>;
  request(op: string, fields?: Record<string, unknown>, timeoutMs?: number): Promise<string>;
  /** Stops the guest (bounded), kills the process if it does not go; resolves with its exit code. */
  stop(): Promise<number | null>;
  stderr(): string;
}

function spawnPeer(name: string, socketPath: string): ChildPeer {
  const child: ChildProcess = spawn(process.execPath, [CHILD, socketPath], {
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const answers = new Map<number, (m: { ok: boolean; out?: string; error?: string }) => void>();
  let seq = 0;
  const ready = new Promise<{ id: number }>((resolve, reject) => {
    child.on(
      'message',
      (m: { type?: string; seq?: number; id?: number; error?: string; ok?: boolean; out?: string }) => {
        if (m.type === 'ready') resolve({ id: m.id! });
        else if (m.type === 'fatal') reject(new Error(`${name}: ${m.error}`));
        else if (m.seq !== undefined) answers.get(m.seq)?.(m as { ok: boolean });
      },
    );
    void exited.then((code) => reject(new Error(`${name} exited (${code}) before its guest was up: ${stderr}`)));
  });
  ready.catch(() => {}); // awaited by the test; this only keeps an early failure from going unhandled
  const request = (op: string, fields: Record<string, unknown> = {}, timeoutMs = 30_000) =>
    new Promise<string>((resolve, reject) => {
      const s = seq++;
      const timer = setTimeout(
        () => reject(new Error(`${name}: no answer to ${op} within ${timeoutMs + 5000} ms`)),
        timeoutMs + 5000,
      );
      answers.set(s, (m) => {
        clearTimeout(timer);
        answers.delete(s);
        if (m.ok) resolve(m.out ?? '');
        else reject(new Error(`${name} ${op}: ${m.error}`));
      });
      child.send({ op, seq: s, timeoutMs, ...fields });
    });
  let stopping: Promise<number | null> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        if (child.connected) await request('stop', {}, 5000).catch(() => {});
        const gone = await Promise.race([exited.then(() => true), sleep(5000).then(() => false)]);
        if (!gone) child.kill('SIGKILL');
      }
      return exited;
    })());
  return { name, ready, request, stop, stderr: () => stderr };
}

/** dist/index.js, rebuilt when missing or older than a source file (npm test builds it first). */
function ensureBundle(): void {
  const bundle = join(ROOT, 'dist', 'index.js');
  const newest = (dir: string): number =>
    Math.max(
      0,
      ...readdirSync(dir, { withFileTypes: true }).map((e) =>
        e.isDirectory() ? newest(join(dir, e.name)) : statSync(join(dir, e.name)).mtimeMs,
      ),
    );
  if (!existsSync(bundle) || statSync(bundle).mtimeMs < newest(join(ROOT, 'src'))) {
    execFileSync(process.execPath, ['scripts/bundle.mjs'], { cwd: ROOT, stdio: 'inherit' });
  }
}

/** Shell words writing `text` (a multiple of 4 bytes) into BAR2 at `address`, one dword each. */
function devmemWrites(address: number, text: string): string {
  const bytes = Buffer.from(text, 'latin1');
  const out: string[] = [];
  for (let i = 0; i < bytes.length; i += 4)
    out.push(`devmem 0x${(address + i).toString(16)} 32 0x${bytes.readUInt32LE(i).toString(16)}`);
  return out.join('; ');
}

/** A guest loop printing `length` bytes from BAR2 at `address` as text, between M42[ and ], then WOKE-43. */
function devmemPrint(address: number, length: number): string {
  const offsets = Array.from({ length: length / 4 }, (_, i) => i * 4).join(' ');
  return (
    `printf 'M%s[' $((40+2)); for o in ${offsets}; do v=$(devmem $((0x${address.toString(16)}+o)) 32); ` +
    'printf "\\x${v:8:2}\\x${v:6:2}\\x${v:4:2}\\x${v:2:2}"; done; echo "]"; echo WOKE-$((40+3))'
  );
}

describe.skipIf(v86Missing !== null)('v86 guests and other peers on our server', () => {
  const { cleanups, startServer } = serverSuite({ name: 'v86-peers', size: 1 << 20, vectors: 1, cleanupMs: 30_000 });

  it.skipIf(qemuMissing !== null)(
    "(a) the guest's doorbell write rings a QEMU ivshmem-doorbell (its PBA bit 0 sets)",
    async () => {
      const server = startServer();
      const q = await QTest.start(
        ['-chardev', `socket,id=chr0,path=${server.socketPath}`, '-device', 'ivshmem-doorbell,chardev=chr0,vectors=1'],
        { qemu: QEMU, lifetimeS: 90 },
      );
      cleanups.push(() => q.close());
      const { ivPosition: qemuId, pba } = await setUpQemuDoorbell(q);
      expect(server.peerIds).toEqual([qemuId]);
      const pending = async () => (Number(await q.read(pba, 4)) & 1) === 1;

      const transport = new V86Transport();
      const device = await IvshmemDevice.create({ mode: 'intx', vectors: 1, server: server.socketPath, transport });
      cleanups.push(() => device.close());
      expect(device.peerVectors(qemuId)).toBe(1);
      const guest = await bootGuest(device, transport, 50_000);
      cleanups.push(() => guest.stop());

      expect(await pending(), 'PBA bit 0 before the ring').toBe(false);
      await guest.run(`devmem 0xfe00000c 32 $((${qemuId}<<16))`);
      await until(pending, `QEMU's PBA bit 0 after the guest rang peer ${qemuId}`);
      expect(device.counters().doorbellsSent).toBe(1);
      expect(device.counters().doorbellsDropped).toEqual({ noPeer: 0, noVector: 0 });
    },
    60_000,
  );

  it('(b) two guests in two processes: A writes a message into shared memory and rings B, whose /dev/uio0 wakes', async () => {
    ensureBundle();
    const server = startServer();
    const peers = [spawnPeer('guest A', server.socketPath), spawnPeer('guest B', server.socketPath)];
    for (const p of peers) cleanups.push(() => p.stop());
    const [a, b] = peers;
    const [idA, idB] = await Promise.all(peers.map((p) => p.ready.then((r) => r.id)));
    expect(new Set([idA, idB]).size).toBe(2);
    expect(server.peerIds.sort()).toEqual([idA, idB].sort());
    await a.request('waitPeer', { peer: idB });

    const nonce = Math.floor(Math.random() * 0xffffffff)
      .toString(16)
      .padStart(8, '0');
    let message = `guest ${idA} to guest ${idB}: hello through ivshmem, nonce ${nonce}`;
    message = message.padEnd(Math.ceil(message.length / 4) * 4, ' ');
    const at = 0xf0000400;

    // B: bind uio, IntrMask on, then block in read(/dev/uio0) in the background.
    await b.request('run', {
      command: "echo '1af4 1110' > /sys/bus/pci/drivers/uio_pci_generic/new_id; devmem 0xfe000000 32 0xffffffff",
    });
    await b.request('run', {
      command: `(dd if=/dev/uio0 bs=4 count=1 2>/dev/null | od -An -tu4; ${devmemPrint(at, message.length)}) &`,
    });
    await sleep(1000);
    expect(await b.request('output'), 'B woke before being rung').not.toContain('M42[');

    // A: the message into shared memory, then the doorbell to B's vector 0.
    await a.request('run', { command: `${devmemWrites(at, message)}; devmem 0xfe00000c 32 $((${idB}<<16))` });
    expect(Buffer.from(server.memory.map(), 0x400, message.length).toString('latin1'), "the server's view").toBe(
      message,
    );
    const tail = await b.request('waitFor', { text: 'WOKE-43', timeoutMs: 30_000 }, 30_000);
    const printed = /M42\[([^\]]*)\]/.exec(tail)?.[1];
    expect(printed, `B's console:\n${tail.slice(-1500)}`).toBe(message);

    expect(await Promise.all(peers.map((p) => p.stop())), 'children exit codes').toEqual([0, 0]);
  }, 85_000);
});
