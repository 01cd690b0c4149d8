// `ivshmem demo` (npm start), run as a user runs it: the summary's counts must match what the
// peers saw, and Ctrl-C must leave no process, socket or shared memory behind.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { until } from './support/until.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const cli = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
const leftovers = (pid: number) => ({
  shm: readdirSync('/dev/shm').filter((f) => f === `ivshmem-demo-${pid}`),
  dirs: readdirSync(tmpdir()).filter((f) => f.startsWith('ivshmem-demo-') && existsSync(`${tmpdir()}/${f}/server.sock`)),
  peers: spawnSync('pgrep', ['-f', `__demo-peer`], { encoding: 'utf8' }).stdout.trim(),
});

describe('ivshmem demo', () => {
  beforeAll(() => {
    if (!existsSync(cli)) execFileSync('node', ['scripts/bundle.mjs'], { cwd: root });
  });

  it('reports counts that add up: every message received intact, acknowledged, and rung for', () => {
    const r = spawnSync('node', [cli, 'demo', '--json', '--duration', '1', '--peers', '3', '--vectors', '3'], { encoding: 'utf8', timeout: 50_000 });
    expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: '' });
    const s = JSON.parse(r.stdout);
    expect(s.peers).toBe(3);
    expect(s.perPeer).toHaveLength(3);
    expect(s.messages.sent).toBeGreaterThan(0);
    expect(s.messages.corrupt).toBe(0);
    expect(s.messages.received).toBe(s.messages.sent);
    expect(s.messages.acknowledged).toBe(s.messages.sent);
    // One doorbell for each message and one for each acknowledgement, each an interrupt somewhere.
    expect(s.doorbells.sent).toBe(s.messages.sent + s.messages.acknowledged);
    expect(s.interrupts).toBe(s.doorbells.sent);
    expect(s.doorbells.dropped).toBe(0);
    // Per peer: what it received is what its predecessor sent.
    const sent = s.perPeer.map((p: { sent: number }) => p.sent);
    const received = s.perPeer.map((p: { received: number }) => p.received);
    expect(received).toEqual([sent[2], sent[0], sent[1]]);
    expect(s.latencyUs.oneWay.count).toBe(s.messages.received);
    expect(s.latencyUs.oneWay.p50).toBeLessThanOrEqual(s.latencyUs.oneWay.p99);
    expect(s.histogram.reduce((a: number, b: { count: number }) => a + b.count, 0)).toBe(s.messages.received);
  });

  it('shows progress and a summary a person can read', () => {
    const r = spawnSync('node', [cli, 'demo', '--duration', '0.5', '--peers', '2'], { encoding: 'utf8', timeout: 50_000 });
    expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: '' });
    expect(r.stdout).toMatch(/s {2}2 peers {2}\d+ messages/);
    expect(r.stdout).toContain('ivshmem demo: 2 peers on one server');
    expect(r.stdout).toMatch(/one-way {6}p50 [\d.]+ µs/);
    expect(r.stdout).toContain('█');
  });

  it('leaves nothing behind on Ctrl-C', async () => {
    const child = spawn('node', [cli, 'demo', '--duration', '10'], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    try {
      await until(() => out.includes('messages'), 'the demo shows progress', 15_000, 20);
    } finally {
      process.kill(-child.pid!, 'SIGINT'); // the whole process group, as a terminal does
    }
    await new Promise((r) => child.once('exit', r));
    expect(out).toContain('ERR_IVSHMEM_INTERRUPTED');
    // Killed peers may take a moment to be reaped on a loaded machine.
    const clean = { shm: [], dirs: [], peers: '' };
    const isClean = () => JSON.stringify(leftovers(child.pid!)) === JSON.stringify(clean);
    await until(isClean, 'nothing left behind', 5000, 50).catch(() => {}); // the expect below shows what remains
    expect(leftovers(child.pid!)).toEqual(clean);
  });

  it('refuses options it cannot honour, with a coded error', () => {
    const r = spawnSync('node', [cli, 'demo', '--vectors', '1'], { encoding: 'utf8', timeout: 30_000 });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('ERR_IVSHMEM_INVALID_VECTORS');
  });
});
