// Starting and stopping a server as a person does, with real processes, signals and /dev/shm: a
// server never resizes or removes memory it did not create and refuses a name another live
// server holds; a failed start leaves nothing behind (socket, shm object, pid file); the
// background mode reports a failed start with exit status 1; every stop signal cleans up;
// SIGUSR1 opens no inspector; probing a socket path costs the server behind it nothing; and
// sizes or options nothing can use are refused with a clear, coded error.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { IvshmemClient } from '../../src/client/ivshmem-client.js';
import { native } from '../../src/os/binding.js';
import { SharedMemory } from '../../src/os/shared-memory.js';
import { IvshmemServer } from '../../src/server/ivshmem-server.js';
import { runNewestFirst } from '../support/cleanups.js';
import { killStartedProcesses, startCli } from '../support/cli-process.js';
import { codeOf } from '../support/error-code.js';
import { openFdCount } from '../support/fd-leaks.js';
import { until } from '../support/until.js';

let dir: string;
let n = 0;
const prefix = `ivshmem-test-start-${process.pid}-`;
const shm = () => `${prefix}${n++}`;
const sock = () => join(dir, `s${n++}.sock`);
const cleanups: (() => void)[] = [];
const failures: string[] = [];
const root = fileURLToPath(new URL('../..', import.meta.url));
const serverJs = join(root, 'dist', 'ivshmem-server.js');

const shmSize = (name: string) => statSync(`/dev/shm/${name}`).size;
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

// A peer in a process of its own that maps the object and writes at `offset`: a shrunken object
// ends it with SIGBUS.
function writeInChild(name: string, offset: number): { status: number | null; signal: string | null } {
  const script = `const b = require(${JSON.stringify(join(root, 'build', 'Release', 'ivshmem_native.node'))});
    const fd = b.shmOpen('/${name}', false, false, 0); const m = new Uint8Array(b.mmap(fd, ${offset + 1}));
    m[${offset}] = 7; process.exit(m[${offset}] === 7 ? 0 : 3);`;
  const r = spawnSync(process.execPath, ['-e', script], { timeout: 10_000 });
  return { status: r.status, signal: r.signal };
}

function serverSync(args: string[]): { status: number | null; text: string } {
  const r = spawnSync(process.execPath, [serverJs, ...args], { timeout: 30_000, encoding: 'utf8' });
  return { status: r.status, text: `${r.stdout}${r.stderr}` };
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ivshmem-start-'));
});
afterEach(() => {
  killStartedProcesses();
  runNewestFirst(cleanups, failures);
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  for (const f of readdirSync('/dev/shm')) if (f.startsWith(prefix)) rmSync(join('/dev/shm', f));
  expect(failures).toEqual([]);
});

describe('memory a server did not create', () => {
  it('a second server with the same -M on the same socket is refused before it touches the memory', async () => {
    const name = shm();
    const path = sock();
    const first = startCli('ivshmem-server.js', ['-F', '-v', '-S', path, '-M', name, '-l', '8M']);
    await first.waitFor('listening on');
    expect(writeInChild(name, 6 << 20)).toEqual({ status: 0, signal: null });
    const second = serverSync(['-F', '-S', path, '-M', name, '-l', '4M']);
    expect(second.status).toBe(1);
    expect(second.text).toContain('EADDRINUSE');
    expect(shmSize(name)).toBe(8 << 20);
    expect(writeInChild(name, 6 << 20)).toEqual({ status: 0, signal: null });
    first.child.kill('SIGTERM');
    expect(await first.exited()).toBe(0);
    expect(existsSync(`/dev/shm/${name}`)).toBe(false);
  });

  it('a second server with the same -M on another socket is refused: the name is in use', async () => {
    const name = shm();
    const first = startCli('ivshmem-server.js', ['-F', '-v', '-S', sock(), '-M', name, '-l', '1M']);
    await first.waitFor('listening on');
    const otherPath = sock();
    const second = serverSync(['-F', '-S', otherPath, '-M', name, '-l', '1M']);
    expect(second.status).toBe(1);
    expect(second.text).toMatch(/in use by another running ivshmem server.*ERR_IVSHMEM_IN_USE/);
    expect(existsSync(otherPath)).toBe(false);
    // The first one serves on, and its memory is still there.
    expect(shmSize(name)).toBe(1 << 20);
    first.child.kill('SIGTERM');
    expect(await first.exited()).toBe(0);
    expect(existsSync(`/dev/shm/${name}`)).toBe(false);
  });

  it('an existing object is used only at its exact size, and is never resized or removed', () => {
    const name = shm();
    const mine = SharedMemory.open({ shm: name }, { size: 1 << 20, create: 'always' });
    cleanups.push(() => {
      mine.close();
      rmSync(`/dev/shm/${name}`, { force: true });
    });
    new Uint8Array(mine.map())[100] = 42;
    const start = () => IvshmemServer.start({ socketPath: sock(), memory: { shm: name }, size: 4 << 20 });
    expect(codeOf(start)).toBe('ERR_IVSHMEM_INVALID_SIZE');
    expect(start).toThrow(/exists with 1048576 bytes, not 4194304/);
    expect(shmSize(name)).toBe(1 << 20);

    const server = IvshmemServer.start({ socketPath: sock(), memory: { shm: name }, size: 1 << 20 });
    expect(new Uint8Array(server.memory.map())[100]).toBe(42);
    server.close();
    expect(shmSize(name)).toBe(1 << 20); // not ours to remove
  });
});

describe('a failed start leaves nothing behind', () => {
  it('in the command-line server: a socket in a missing folder, a socket in use, an unwritable pid file', async () => {
    const running = IvshmemServer.start({ socketPath: sock(), memory: { shm: shm() }, size: 1 << 16 });
    cleanups.push(() => running.close());
    const cases: [string, string[], RegExp][] = [
      ['missing folder', ['-S', join(dir, 'no-such-dir', 'a.sock')], /ENOENT/],
      ['socket in use', ['-S', running.socketPath], /EADDRINUSE/],
      ['unwritable pid file', ['-S', sock(), '-p', join(dir, 'no-such-dir', 'pid')], /cannot write pid file/],
    ];
    for (const [what, args, message] of cases) {
      const name = shm();
      const pid = args.includes('-p') ? undefined : join(dir, `pid${n++}`);
      const r = serverSync(['-F', '-M', name, ...args, ...(pid ? ['-p', pid] : [])]);
      expect(r.status, what).toBe(1);
      expect(r.text, what).toMatch(message);
      expect(r.text, `${what}: no stack trace`).not.toMatch(/\n\s+at /);
      expect(existsSync(`/dev/shm/${name}`), `${what}: shm`).toBe(false);
      if (pid) expect(existsSync(pid), `${what}: pid file`).toBe(false);
      if (what === 'unwritable pid file') expect(existsSync(args[1]), `${what}: socket`).toBe(false);
    }
    expect(running.stats().joins + running.stats().setupFailures).toBe(0);
  });

  it('in IvshmemServer.start: the socket path is removed, the object it created too, and no fd stays open', () => {
    const blocker = IvshmemServer.start({ socketPath: sock(), memory: { shm: shm() }, size: 1 << 16 });
    cleanups.push(() => blocker.close());
    const path = sock();
    const name = shm();
    const fds = openFdCount();
    // The shm name is held: the listener was made first and must go again.
    expect(() =>
      IvshmemServer.start({
        socketPath: path,
        memory: { shm: (blocker.memory.source as { shm: string }).shm },
        size: 1 << 16,
      }),
    ).toThrow(/in use/);
    expect(existsSync(path)).toBe(false);
    // The socket is in use: no memory is created at all.
    expect(() => IvshmemServer.start({ socketPath: blocker.socketPath, memory: { shm: name }, size: 1 << 16 })).toThrow(
      /EADDRINUSE/,
    );
    expect(existsSync(`/dev/shm/${name}`)).toBe(false);
    expect(openFdCount()).toBe(fds);
  });
});

describe('the background server', () => {
  it('exits 1 with the reason when it cannot start, and 0 with a live pid in the pid file when it can', async () => {
    const name = shm();
    const pidfile = join(dir, `pid${n++}`);
    const bad = serverSync(['-S', join(dir, 'no-such-dir', 'a.sock'), '-M', name, '-p', pidfile]);
    expect(bad.status).toBe(1);
    expect(bad.text).toMatch(/cannot start: .*ENOENT/);
    expect(existsSync(pidfile)).toBe(false);
    expect(existsSync(`/dev/shm/${name}`)).toBe(false);
    const badPid = serverSync(['-S', sock(), '-M', name, '-p', join(dir, 'no-such-dir', 'pid')]);
    expect(badPid.status).toBe(1);
    expect(badPid.text).toMatch(/cannot write pid file/);
    // A pid file that already says something (another server's) says it again after a failed start.
    const kept = join(dir, `pid${n++}`);
    writeFileSync(kept, '4242\n');
    const badKept = serverSync(['-S', join(dir, 'no-such-dir', 'a.sock'), '-M', shm(), '-p', kept]);
    expect(badKept.status).toBe(1);
    expect(readFileSync(kept, 'utf8')).toBe('4242\n');

    const path = sock();
    const good = serverSync(['-S', path, '-M', name, '-p', pidfile, '-l', '64K']);
    expect(good.status).toBe(0);
    const pid = Number(readFileSync(pidfile, 'utf8'));
    cleanups.push(() => {
      if (alive(pid)) process.kill(pid, 'SIGKILL');
    });
    expect(alive(pid)).toBe(true);
    expect(existsSync(path) && existsSync(`/dev/shm/${name}`)).toBe(true);
    process.kill(pid, 'SIGTERM');
    await until(() => !alive(pid), 'the server exits');
    expect([existsSync(path), existsSync(`/dev/shm/${name}`), existsSync(pidfile)]).toEqual([false, false, false]);
  });
});

describe('signals', () => {
  for (const signal of ['SIGHUP', 'SIGQUIT', 'SIGINT', 'SIGTERM'] as const) {
    it(`${signal} stops the server and removes its socket, shm object and pid file`, async () => {
      const path = sock();
      const name = shm();
      const pidfile = join(dir, `pid${n++}`);
      const server = startCli('ivshmem-server.js', ['-F', '-v', '-S', path, '-M', name, '-p', pidfile, '-l', '64K']);
      await server.waitFor('listening on');
      expect(readFileSync(pidfile, 'utf8').trim()).toBe(String(server.child.pid));
      server.child.kill(signal);
      expect(await server.exited()).toBe(0);
      expect([existsSync(path), existsSync(`/dev/shm/${name}`), existsSync(pidfile)]).toEqual([false, false, false]);
    });
  }

  it('SIGUSR1 opens no inspector: the server serves on', async () => {
    const path = sock();
    const server = startCli('ivshmem-server.js', ['-F', '-v', '-S', path, '-M', shm(), '-l', '64K']);
    await server.waitFor('listening on');
    server.child.kill('SIGUSR1');
    await server.waitFor('SIGUSR1 ignored');
    const client = await IvshmemClient.connect(path);
    cleanups.push(() => client.close());
    expect(client.id).toBe(0);
    expect(server.out()).not.toMatch(/Debugger listening/);
    expect(server.child.exitCode).toBe(null);
  });
});

describe('probing a socket path', () => {
  it('costs the running server nothing: no id spent, no leave logged, the first client gets id 0', async () => {
    const leaves: number[] = [];
    const server = IvshmemServer.start({ socketPath: sock(), memory: { shm: shm() }, size: 1 << 16, log: () => {} });
    cleanups.push(() => server.close());
    server.on('leave', (id) => leaves.push(id));
    expect(native().listening(server.socketPath)).toBe(true);
    for (let i = 0; i < 3; i++) {
      expect(() =>
        IvshmemServer.start({ socketPath: server.socketPath, memory: { shm: shm() }, size: 1 << 16 }),
      ).toThrow(/EADDRINUSE/);
    }
    expect(serverSync(['-F', '-S', server.socketPath, '-M', shm()]).status).toBe(1);
    await new Promise((r) => setTimeout(r, 50)); // a probe that connected would be accepted by now
    const client = await IvshmemClient.connect(server.socketPath);
    cleanups.push(() => client.close());
    expect(client.id).toBe(0);
    const stats = server.stats();
    expect([stats.joins, stats.setupFailures, leaves.length]).toEqual([1, 0, 0]);
  });
});

describe('sizes and options nothing can use', () => {
  it('the command line refuses sizes below a page and above what a device maps', () => {
    for (const size of ['1', '4095', '1048576G']) {
      const name = shm();
      const r = serverSync(['-F', '-S', sock(), '-M', name, '-l', size]);
      expect(r.status, size).toBe(1);
      expect(r.text, size).toMatch(/size \d+ is (below 4096 bytes|above)/);
      expect(existsSync(`/dev/shm/${name}`)).toBe(false);
    }
  });

  it('IvshmemServer.start names the option, the rule and the value', () => {
    const expectRefusal = (options: unknown, code: string, message: RegExp) => {
      const start = () => IvshmemServer.start(options as Parameters<typeof IvshmemServer.start>[0]);
      expect(codeOf(start), String(message)).toBe(code);
      expect(start).toThrow(message);
    };
    expectRefusal(undefined, 'ERR_IVSHMEM_INVALID_OPTION', /options must be an object/);
    expectRefusal(
      { socketPath: sock(), vectors: '4' },
      'ERR_IVSHMEM_INVALID_VECTORS',
      /vectors must be an integer 1\.\.2048, got the string "4"/,
    );
    expectRefusal({ socketPath: sock(), sise: 4096 }, 'ERR_IVSHMEM_INVALID_OPTION', /unknown option "sise"/);
    expectRefusal({ socketPath: sock(), size: 1 }, 'ERR_IVSHMEM_INVALID_SIZE', /below 4096/);
    expectRefusal({ socketPath: sock(), size: 2 ** 50 }, 'ERR_IVSHMEM_INVALID_SIZE', /above/);
    expectRefusal({ socketPath: sock(), memory: 'x' }, 'ERR_IVSHMEM_INVALID_OPTION', /memory must be/);
    expectRefusal(
      { socketPath: 7 },
      'ERR_IVSHMEM_INVALID_OPTION',
      /socketPath must be a non-empty path, got the number 7/,
    );
  });

  it('the server prints no "example code" banner', async () => {
    const server = startCli('ivshmem-server.js', ['-F', '-v', '-S', sock(), '-M', shm(), '-l', '64K']);
    await server.waitFor('listening on');
    expect(server.out()).not.toMatch(/Example code/i);
  });
});
