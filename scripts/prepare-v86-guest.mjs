#!/usr/bin/env node
// Prepares the files for the v86 Linux guest (issue #8) from Debian 12 packages and caches them in
// .cache/v86-guest/ (ignored by git; nothing downloaded is committed):
//   bios.bin            SeaBIOS         (seabios, usr/share/seabios/bios.bin)
//   bzImage             i386 kernel     (linux-image-<ABI>-686-unsigned:i386, boot/vmlinuz-<ABI>-686)
//   uio.ko              kernel module   (same package, lib/modules/<ABI>-686/kernel/drivers/uio/)
//   uio_pci_generic.ko  kernel module   (same)
//   busybox             static i386     (busybox-static:i386, bin/busybox)
//   manifest.json       ABI, package versions, sha256 of each file
//
// Idempotent: when manifest.json is present and every file matches its sha256 it exits at once.
// Otherwise it adds the i386 architecture if missing, runs apt-get update (up to 3 tries; a failed
// index such as bookworm-security's i386 one is tolerated as long as the packages resolve), resolves
// the kernel ABI from linux-image-686:i386, downloads the three .deb files into a temporary
// directory, extracts only the files above and deletes the temporary directory.
//
// Usage: node scripts/prepare-v86-guest.mjs [--force]   (--force re-downloads even when cached)
// As a module: `await prepareV86Guest()` returns { dir, manifest, paths }.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const GUEST_DIR = join(ROOT, '.cache', 'v86-guest');
export const GUEST_FILES = ['bios.bin', 'bzImage', 'uio.ko', 'uio_pci_generic.ko', 'busybox'];
const MANIFEST = 'manifest.json';
const MANIFEST_FORMAT = 1;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const sha256 = (path) => createHash('sha256').update(readFileSync(path)).digest('hex');

class PrepareError extends Error {}

function fail(message) {
  throw new PrepareError(message);
}

/** Runs a command synchronously; returns { status, stdout, stderr } (never throws unless `check`). */
function run(cmd, args, { check = true, cwd, what } = {}) {
  const r = spawnSync(cmd, args, {
    cwd,
    encoding: 'utf8',
    maxBuffer: 64 << 20,
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive', LC_ALL: 'C' },
  });
  if (r.error) fail(`${what ?? cmd}: cannot run ${cmd}: ${r.error.message}`);
  if (check && r.status !== 0) {
    fail(`${what ?? cmd} failed (exit ${r.status}): ${[cmd, ...args].join(' ')}\n${tail(r.stderr || r.stdout)}`);
  }
  return r;
}

function tail(text, lines = 15) {
  return String(text ?? '')
    .trimEnd()
    .split('\n')
    .slice(-lines)
    .map((l) => `    ${l}`)
    .join('\n');
}

function have(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** Reads the manifest and checks that every listed file is present with the recorded sha256. */
export function checkCache(dir = GUEST_DIR) {
  let manifest;
  try {
    manifest = JSON.parse(readFileSync(join(dir, MANIFEST), 'utf8'));
  } catch {
    return null;
  }
  if (manifest?.format !== MANIFEST_FORMAT || typeof manifest.abi !== 'string') return null;
  for (const name of GUEST_FILES) {
    const want = manifest.files?.[name]?.sha256;
    const path = join(dir, name);
    if (!want || !existsSync(path) || sha256(path) !== want) return null;
  }
  return manifest;
}

function result(dir, manifest) {
  return { dir, manifest, paths: Object.fromEntries(GUEST_FILES.map((n) => [n, join(dir, n)])) };
}

/**
 * Makes sure the guest files are in `dir` (default .cache/v86-guest/) and returns
 * { dir, manifest, paths }. Throws an Error with a readable message when something is missing.
 */
export async function prepareV86Guest({ dir = GUEST_DIR, force = false, log = console.log } = {}) {
  const say = (msg) => log(`[v86-guest] ${msg}`);
  if (!force) {
    const manifest = checkCache(dir);
    if (manifest) {
      say(`cached: ${dir} (kernel ${manifest.abi}-686, ${manifest.packages.kernel.version})`);
      return result(dir, manifest);
    }
  }
  mkdirSync(dirname(dir), { recursive: true });
  const release = await lock(`${dir}.lock`, say);
  try {
    // Another process may have filled the cache while this one waited for the lock.
    if (!force) {
      const manifest = checkCache(dir);
      if (manifest) {
        say(`cached (prepared by another process): ${dir}`);
        return result(dir, manifest);
      }
    }
    const manifest = await populate(dir, say);
    return result(dir, manifest);
  } finally {
    release();
  }
}

/** A lock file holding the owner's pid; a stale one (dead pid) is taken over. */
async function lock(path, say) {
  const deadline = Date.now() + 15 * 60_000;
  let announced = false;
  for (;;) {
    try {
      const fd = openSync(path, 'wx');
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return () => rmSync(path, { force: true });
    } catch (e) {
      if (e.code !== 'EEXIST') throw e;
    }
    const pid = Number.parseInt(readFileSync(path, 'utf8').trim(), 10);
    let alive = false;
    if (pid > 0) {
      try {
        process.kill(pid, 0);
        alive = true;
      } catch (e) {
        alive = e.code === 'EPERM';
      }
    }
    if (!alive) {
      try {
        unlinkSync(path);
      } catch {
        /* another waiter removed it */
      }
      continue;
    }
    if (Date.now() > deadline) fail(`timed out waiting for ${path} (held by pid ${pid})`);
    if (!announced) say(`waiting for pid ${pid}, which is preparing the guest files`);
    announced = true;
    await sleep(500);
  }
}

async function populate(dir, say) {
  const t0 = performance.now();
  for (const cmd of ['dpkg', 'dpkg-deb', 'apt-get', 'apt-cache', 'tar']) {
    if (!have(cmd)) fail(`'${cmd}' not found: this script needs a Debian (12, bookworm) system with apt`);
  }
  const isRoot = process.getuid?.() === 0;
  let priv = [];
  if (!isRoot) {
    if (!have('sudo')) fail('not root and no sudo: dpkg --add-architecture and apt-get update need root');
    priv = ['sudo'];
  }
  const asRoot = (cmd, args, opts) => (priv.length ? run(priv[0], [cmd, ...args], opts) : run(cmd, args, opts));

  // 1. The i386 architecture (the kernel and busybox are i386 packages).
  const foreign = run('dpkg', ['--print-foreign-architectures']).stdout.split(/\s+/);
  if (foreign.includes('i386')) {
    say('dpkg: i386 architecture already enabled');
  } else {
    say(`dpkg: ${priv.join(' ')}${priv.length ? ' ' : ''}dpkg --add-architecture i386`);
    asRoot('dpkg', ['--add-architecture', 'i386'], { what: 'dpkg --add-architecture i386' });
  }

  // 2. apt-get update, up to 3 tries. A failed try is tolerated (and not retried) when the packages
  //    resolve anyway: the bookworm-security i386 index often fails with "File has unexpected size …
  //    Mirror sync in progress?", and the packages needed here come from bookworm main.
  let updateError = null;
  let found = null;
  for (let attempt = 1; attempt <= 3; attempt++) {
    const t = performance.now();
    say(`apt-get update (attempt ${attempt}/3)`);
    const r = asRoot('apt-get', ['update', '-q'], { check: false });
    if (r.status === 0) {
      updateError = null;
      say(`apt-get update: ok in ${((performance.now() - t) / 1000).toFixed(1)} s`);
      break;
    }
    const errs = `${r.stdout}\n${r.stderr}`.split('\n').filter((l) => /^(E:|W:|Err:)/.test(l.trim()));
    updateError = `exit ${r.status}\n${tail(errs.join('\n') || r.stderr)}`;
    say(
      `apt-get update: exit ${r.status} after ${((performance.now() - t) / 1000).toFixed(1)} s: ` +
        `${errs.find((l) => l.startsWith('E:'))?.slice(0, 160) ?? errs[0] ?? ''}`,
    );
    found = resolvePackages();
    if (found.ok) {
      say('apt-get update: tolerating the error, the needed packages resolve');
      break;
    }
    if (attempt < 3) await sleep(3000 * attempt);
  }

  // 3. Kernel ABI: linux-image-686:i386 depends on linux-image-<ABI>-686.
  if (!found?.ok) found = resolvePackages();
  if (!found.ok) {
    fail(
      `${found.reason}` +
        (updateError ? `\n  apt-get update also failed: ${updateError}` : '') +
        '\n  (an i386 686 kernel is only in Debian 12 bookworm; keep bookworm in the apt sources)',
    );
  }
  const { abi, kernelPkg } = found;
  say(`kernel ABI: ${abi} -> ${kernelPkg}:i386`);

  // 4. Download the three packages into a temporary directory.
  const tmp = mkdtempSync(join(tmpdir(), 'v86-guest-'));
  try {
    const pkgs = ['seabios', 'busybox-static:i386', `${kernelPkg}:i386`];
    const t = performance.now();
    say(`apt-get download ${pkgs.join(' ')} (into ${tmp})`);
    const dl = run('apt-get', ['download', '-q', ...pkgs], { cwd: tmp, check: false });
    if (dl.status !== 0) {
      fail(
        `apt-get download failed (exit ${dl.status}):\n${tail(dl.stderr || dl.stdout)}` +
          (updateError ? `\n  apt-get update had failed: ${updateError}` : ''),
      );
    }
    const debs = readdirSync(tmp).filter((f) => f.endsWith('.deb'));
    const find = (prefix) => {
      const f = debs.find((d) => d.startsWith(`${prefix}_`));
      if (!f) fail(`apt-get download did not produce ${prefix}_*.deb (got: ${debs.join(', ') || 'nothing'})`);
      return join(tmp, f);
    };
    const deb = { seabios: find('seabios'), busybox: find('busybox-static'), kernel: find(kernelPkg) };
    const mb = Object.values(deb).reduce((s, p) => s + statSync(p).size, 0) / 1e6;
    say(`downloaded ${debs.length} packages, ${mb.toFixed(1)} MB in ${((performance.now() - t) / 1000).toFixed(1)} s`);

    const version = (path) => {
      const [pkg, ver, arch] = run('dpkg-deb', ['-f', path, 'Package', 'Version', 'Architecture'])
        .stdout.split('\n')
        .map((l) => l.replace(/^\w+:\s*/, '').trim());
      return { package: pkg, version: ver, architecture: arch };
    };

    // 5. Extract only the needed files.
    const x = join(tmp, 'x');
    mkdirSync(x);
    const modDir = `./lib/modules/${abi}-686/kernel/drivers/uio`;
    const wanted = [
      [deb.seabios, ['./usr/share/seabios/bios.bin']],
      [deb.busybox, ['./bin/busybox']],
      [deb.kernel, [`./boot/vmlinuz-${abi}-686`, `${modDir}/uio.ko`, `${modDir}/uio_pci_generic.ko`]],
    ];
    for (const [path, members] of wanted) {
      say(`extract ${members.join(' ')} from ${path.slice(tmp.length + 1)}`);
      await extract(path, x, members);
    }

    // 6. Check and copy into the cache, the manifest last.
    const sources = {
      'bios.bin': join(x, 'usr/share/seabios/bios.bin'),
      bzImage: join(x, `boot/vmlinuz-${abi}-686`),
      'uio.ko': join(x, modDir, 'uio.ko'),
      'uio_pci_generic.ko': join(x, modDir, 'uio_pci_generic.ko'),
      busybox: join(x, 'bin/busybox'),
    };
    checkFormats(sources, abi);
    mkdirSync(dir, { recursive: true });
    rmSync(join(dir, MANIFEST), { force: true });
    const files = {};
    for (const name of GUEST_FILES) {
      const target = join(dir, name);
      copyFileSync(sources[name], `${target}.tmp`);
      renameSync(`${target}.tmp`, target);
      files[name] = { size: statSync(target).size, sha256: sha256(target) };
    }
    const manifest = {
      format: MANIFEST_FORMAT,
      abi,
      packages: { seabios: version(deb.seabios), busybox: version(deb.busybox), kernel: version(deb.kernel) },
      files,
      preparedAt: new Date().toISOString(),
    };
    writeFileSync(join(dir, `${MANIFEST}.tmp`), `${JSON.stringify(manifest, null, 2)}\n`);
    renameSync(join(dir, `${MANIFEST}.tmp`), join(dir, MANIFEST));
    const total = Object.values(files).reduce((s, f) => s + f.size, 0);
    say(`wrote ${GUEST_FILES.length} files (${(total / 1e6).toFixed(1)} MB) and ${MANIFEST} to ${dir}`);
    say(`done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    return manifest;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
    say(`removed ${tmp}`);
  }
}

/** Resolves the kernel ABI and checks that apt knows all three packages. */
function resolvePackages() {
  const deps = run('apt-cache', ['depends', 'linux-image-686:i386'], { check: false });
  const m = /Depends:\s*linux-image-(\d+\.\d+\.\d+-\d+)-686(?::i386)?\s*$/m.exec(deps.stdout);
  if (!m) {
    return {
      ok: false,
      reason:
        'cannot resolve the kernel ABI from `apt-cache depends linux-image-686:i386`' +
        ` (exit ${deps.status}):\n${tail(deps.stdout + deps.stderr)}`,
    };
  }
  const abi = m[1];
  const kernelPkg = `linux-image-${abi}-686-unsigned`;
  // One call for all three: without a package cache (apt-get update failed) each apt-cache call
  // rebuilds it in memory, which takes about 2 s here.
  const pkgs = ['seabios', 'busybox-static:i386', `${kernelPkg}:i386`];
  const r = run('apt-cache', ['show', '--no-all-versions', ...pkgs], { check: false });
  const shown = new Set([...r.stdout.matchAll(/^Package:\s*(\S+)/gm)].map((x) => x[1]));
  const missing = pkgs.filter((p) => !shown.has(p.replace(/:i386$/, '')));
  if (missing.length) {
    return { ok: false, reason: `apt-cache show cannot find ${missing.join(', ')}:\n${tail(r.stderr || r.stdout)}` };
  }
  return { ok: true, abi, kernelPkg };
}

/** `dpkg-deb --fsys-tarfile DEB | tar -x -C DIR MEMBERS...`, failing if either side fails. */
function extract(debPath, outDir, members) {
  return new Promise((resolvePromise, reject) => {
    const dpkg = spawn('dpkg-deb', ['--fsys-tarfile', debPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    const tar = spawn('tar', ['-x', '--no-same-owner', '-C', outDir, ...members], {
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    let errs = '';
    dpkg.stderr.on('data', (d) => {
      errs += d;
    });
    tar.stderr.on('data', (d) => {
      errs += d;
    });
    dpkg.stdout.pipe(tar.stdin);
    tar.stdin.on('error', () => {
      /* tar exited early; reported through its exit code */
    });
    const codes = {};
    const done = () => {
      if (!('dpkg' in codes && 'tar' in codes)) return;
      if (codes.tar === 0 && codes.dpkg === 0) return resolvePromise();
      reject(
        new PrepareError(
          `extracting ${members.join(' ')} from ${debPath} failed` +
            ` (dpkg-deb exit ${codes.dpkg}, tar exit ${codes.tar}):\n${tail(errs)}`,
        ),
      );
    };
    dpkg.on('error', reject);
    tar.on('error', reject);
    dpkg.on('close', (c) => {
      codes.dpkg = c;
      done();
    });
    tar.on('close', (c) => {
      codes.tar = c;
      done();
    });
  });
}

/** Cheap sanity checks so a wrong file is reported here rather than as a guest that does not boot. */
function checkFormats(sources, abi) {
  const head = (name, n) => readFileSync(sources[name]).subarray(0, n);
  const isElf386 = (b) =>
    b[0] === 0x7f && b.toString('latin1', 1, 4) === 'ELF' && b[4] === 1 && b.readUInt16LE(18) === 3;
  for (const name of ['busybox', 'uio.ko', 'uio_pci_generic.ko']) {
    if (!isElf386(head(name, 20))) fail(`${sources[name]} is not a 32-bit i386 ELF file`);
  }
  if (head('bzImage', 0x206).toString('latin1', 0x202, 0x206) !== 'HdrS') {
    fail(`${sources.bzImage} is not a bzImage (no HdrS signature)`);
  }
  const bios = statSync(sources['bios.bin']).size;
  if (bios === 0 || bios % 65536 !== 0 || bios > 1 << 20) fail(`${sources['bios.bin']}: unexpected size ${bios}`);
  const ko = readFileSync(sources['uio_pci_generic.ko']).toString('latin1');
  if (!ko.includes(`vermagic=${abi}-686 `)) fail(`uio_pci_generic.ko was not built for ${abi}-686`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  try {
    await prepareV86Guest({ force: process.argv.includes('--force') });
  } catch (e) {
    console.error(`[v86-guest] ERROR: ${e instanceof PrepareError ? e.message : e.stack}`);
    process.exit(1);
  }
}
