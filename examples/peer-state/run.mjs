#!/usr/bin/env node
// The peer state table, end to end: an ivshmem-server process keeps the table; two peers in
// processes of their own and a Linux guest in v86 (in this process) take part. One peer is killed
// with SIGKILL, the other leaves cleanly, and the guest's own shell driver sees each entry go to
// "gone". Prints how long that took, seen from the host and from inside the guest:
//   node examples/peer-state/run.mjs
// See README.md next to this file.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { V86 } from 'v86';
import { IvshmemDevice, PRESENCE_GONE, V86Transport } from 'ivshmem-ts';
import { prepareV86Guest } from '../../scripts/prepare-v86-guest.mjs';
import { guestEmulatorOptions } from '../../scripts/v86-guest-options.mjs';
import { ARMED, installStateDriver } from './guest-driver.mjs';

const BAR0 = 0xfe000000; // V86Transport's defaults
const BAR2 = 0xf0000000;
const SERVER = fileURLToPath(new URL('../../dist/ivshmem-server.js', import.meta.url));
const PEER = fileURLToPath(new URL('./peer.mjs', import.meta.url));
const t0 = performance.now();
const say = (text) => console.log(`[${((performance.now() - t0) / 1000).toFixed(1).padStart(5)} s] ${text}`);
const sleep = (n) => new Promise((r) => setTimeout(r, n));

async function until(test, what, timeoutMs = 30_000, everyMs = 5) {
  const end = performance.now() + timeoutMs;
  while (!test()) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** A child process whose stdout lines are kept; killed (SIGKILL) by stop() if still running. */
function child(name, args) {
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = [];
  let rest = '';
  proc.stdout.setEncoding('utf8').on('data', (s) => {
    const parts = (rest + s).split('\n');
    rest = parts.pop();
    lines.push(...parts);
  });
  const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve(signal ?? code)));
  return {
    name,
    proc,
    exited,
    line: async (prefix) => {
      await until(() => lines.some((l) => l.startsWith(prefix)), `${name} to print "${prefix}"`);
      return lines.find((l) => l.startsWith(prefix));
    },
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await exited;
    },
  };
}

const { dir: guestDir } = await prepareV86Guest({ log: say });
const dir = mkdtempSync(join(tmpdir(), 'ivshmem-peer-state-'));
const socketPath = join(dir, 'server.sock');
const shm = `ivshmem-peer-state-${process.pid}`;
const procs = [];
let device;
let emulator;
let exitCode = 0;
try {
  // 1. The server, with a table of 4 slots in the memory's last page.
  const server = child('server', [
    SERVER,
    '-F',
    '-S',
    socketPath,
    '-M',
    shm,
    '-l',
    '1M',
    '-n',
    '1',
    '--state-table',
    '4',
  ]);
  procs.push(server);
  await until(() => existsSync(socketPath), 'the server socket', 10_000);
  say(`ivshmem-server (pid ${server.proc.pid}) on ${socketPath}, 1 MiB shm ${shm}, --state-table 4`);

  // 2. Two peers in processes of their own, each publishing a state.
  const peers = [];
  for (const [name, state] of [
    ['peer A', 0xa11ce],
    ['peer B', 0xb0b],
  ]) {
    const p = child(name, [PEER, socketPath, String(state)]);
    procs.push(p);
    p.id = Number((await p.line('ready ')).split(' ')[1]);
    say(`${name} (pid ${p.proc.pid}) joined as id ${p.id}, state 0x${state.toString(16)}`);
    peers.push(p);
  }

  // 3. The guest's device, in this process: INTx, vector 0 rung on every change of the table.
  const transport = new V86Transport();
  device = await IvshmemDevice.create({
    mode: 'intx',
    vectors: 1,
    server: socketPath,
    transport,
    stateTable: { vector: 0 },
  });
  const table = device.peerStateTable;
  say(`the guest's device joined as id ${device.id}; the table is at offset 0x${table.offset.toString(16)}`);

  emulator = new V86(
    guestEmulatorOptions({ dir: guestDir, extraInit: installStateDriver({ bar0: BAR0, bar2: BAR2 }) }),
  );
  let consoleText = '';
  emulator.add_listener('serial0-output-byte', (byte) => (consoleText += String.fromCharCode(byte)));
  emulator.add_listener('emulator-loaded', () => {
    transport.attach(emulator, device);
    emulator.run();
  });
  /** The guest's PEER lines so far, parsed. */
  const guestSaw = () =>
    [...consoleText.matchAll(/^PEER (\d+) (\d+) (\w+) (0x[0-9A-Fa-f]+)\r?$/gm)].map((m) => ({
      slot: Number(m[1]),
      id: Number(m[2]),
      presence: m[3],
      state: Number(m[4]),
    }));
  const guestHas = (id, presence) => guestSaw().some((e) => e.id === id && e.presence === presence);

  let t = performance.now();
  await until(() => consoleText.includes('READY-42'), 'the guest to boot', 90_000, 20);
  say(`guest booted in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  emulator.serial0_send('ivshmem-state 0x600d &\n');
  await until(() => consoleText.includes(`${ARMED}\r`), 'the guest driver', 30_000, 20);
  say(`guest: ${consoleText.match(/TABLE [^\r]*/)[0]}`);
  await until(() => peers.every((p) => guestHas(p.id, 'present')), 'the guest to see both peers present', 30_000, 20);
  for (const e of guestSaw()) say(`guest: slot ${e.slot}: peer ${e.id} ${e.presence}, state 0x${e.state.toString(16)}`);

  // 4. Peer A dies without a word (SIGKILL), then peer B leaves cleanly (SIGTERM: it closes its device).
  const results = [];
  for (const [p, signal] of [
    [peers[0], 'SIGKILL'],
    [peers[1], 'SIGTERM'],
  ]) {
    const slot = table.slotOf(p.id);
    let hostMs;
    t = performance.now();
    p.proc.kill(signal);
    await until(
      () => {
        if (hostMs === undefined && table.entry(slot).presence === PRESENCE_GONE) hostMs = performance.now() - t;
        return guestHas(p.id, 'gone');
      },
      `the guest to see ${p.name} gone`,
      30_000,
      1,
    );
    const guestMs = performance.now() - t;
    const last = guestSaw()
      .filter((e) => e.id === p.id)
      .pop();
    say(
      `${signal} ${p.name} (id ${p.id}): gone in the shared memory after ${hostMs.toFixed(1)} ms; ` +
        `the guest's driver printed it after ${guestMs.toFixed(0)} ms (its last state 0x${last.state.toString(16)} still readable)`,
    );
    results.push({ peer: p.id, signal, hostMs, guestMs, state: last.state });
  }
  say(`device counters: ${JSON.stringify(device.counters())}`);
  console.log(`RESULT ${JSON.stringify(results)}`);
} catch (error) {
  console.error(error);
  exitCode = 1;
} finally {
  if (emulator) {
    await emulator.stop();
    await emulator.destroy();
  }
  device?.close();
  const server = procs.shift();
  for (const p of procs) await p.stop();
  if (server) {
    server.proc.kill('SIGTERM'); // the server removes its socket and shm object on the way out
    await Promise.race([server.exited, sleep(5000)]);
    await server.stop();
  }
  const left = [socketPath, `/dev/shm/${shm}`].filter((p) => existsSync(p));
  rmSync(dir, { recursive: true, force: true });
  say(left.length ? `left behind: ${left.join(', ')}` : 'shut down: no process, socket or shared memory left behind');
  if (left.length) exitCode = 1;
}
process.exitCode = exitCode;
