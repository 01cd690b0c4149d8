#!/usr/bin/env node
// The `ivshmem` umbrella command: server, client, info (and the demo and benchmark with their issue).
import { parseArgs } from 'node:util';
import { IvshmemDevice } from '../device/device.js';
import { checkBar2Size } from '../device/options.js';
import { IvshmemError } from '../errors.js';
import type { DeviceMode } from '../device/pci/ivshmem-function.js';
import { probeFunction } from '../device/pci/probe.js';
import { fastCallStatus } from '../os/fast-binding.js';
import { parseSize } from './size.js';
import { serverCommand } from './server-command.js';
import { clientCommand } from './client-command.js';
import { formatSummary, runDemo } from '../demo/demo.js';
import { runPeer } from '../demo/peer.js';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

const USAGE = `usage: ivshmem <command> [options]

commands:
  demo     peers in separate processes exchange messages through shared memory and doorbells
           --peers N (default 3)  --vectors N (default 2)
           --size BYTES (power of two, at least 4K; default 1M)
           --duration SECONDS (default 5)  --json
  bench    run the benchmarks (npm run bench; needs the source checkout): --quick for a short run
  server   run an ivshmem server (QEMU's ivshmem-server flags; see ivshmem server -h)
  client   run the debugging client (QEMU's ivshmem-client; see ivshmem client -h)
  info     build a device and show what a guest's PCI probe finds
           --mode plain|doorbell|intx  (default doorbell)
           --vectors N                 (doorbell/intx, default 4)
           --size BYTES                (BAR2 size, power of two, at least 16, default 1M)
           --json                      machine-readable output
  help     this text
`;

const hex = (n: number | bigint, width: number) => `0x${n.toString(16).padStart(width, '0')}`;

/** Memory for the BAR2 `info` shows: the device's size rules first, so a refusal says which. */
function bar2Memory(size: number): ArrayBuffer {
  checkBar2Size(size, Infinity);
  try {
    return new ArrayBuffer(size);
  } catch (err) {
    throw new IvshmemError(
      'ERR_IVSHMEM_INVALID_SIZE',
      `BAR2 size ${size} cannot be allocated in this process: ${(err as Error).message}`,
      { cause: err },
    );
  }
}

async function info(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      mode: { type: 'string', default: 'doorbell' },
      vectors: { type: 'string' },
      size: { type: 'string', default: '1M' },
      json: { type: 'boolean', default: false },
    },
  });
  const mode = values.mode as DeviceMode;
  const size = parseSize(values.size!);
  const memory = bar2Memory(size);
  const vectors = mode === 'plain' ? undefined : Number(values.vectors ?? 4);
  const interrupts: string[] = [];
  const device = await IvshmemDevice.create({
    mode,
    vectors,
    size,
    memory,
    transport: {
      setIrqLevel: (level) => interrupts.push(`INTx ${level}`),
      sendMsi: (address, data, vector) => interrupts.push(`MSI ${hex(address, 8)} ${hex(data, 4)} (vector ${vector})`),
    },
  });
  const found = probeFunction(device);
  if (values.json) {
    console.log(JSON.stringify(found, (_k, v) => (typeof v === 'bigint' ? Number(v) : v), 2));
    return;
  }
  console.log(
    `${hex(found.vendor, 4).slice(2)}:${hex(found.device, 4).slice(2)} RAM memory: Inter-VM shared memory (rev ${found.revision.toString(16).padStart(2, '0')}), mode ${mode}`,
  );
  console.log(
    `  subsystem ${hex(found.subsystemVendor, 4).slice(2)}:${hex(found.subsystem, 4).slice(2)}, class ${hex(found.classCode, 4)}, interrupt pin ${found.interruptPin === 0 ? 'none' : 'INTA'}`,
  );
  for (const bar of found.bars) {
    console.log(
      `  BAR${bar.index}: memory, ${bar.is64 ? '64-bit' : '32-bit'}, ${bar.prefetchable ? 'prefetchable' : 'non-prefetchable'}, size ${bar.size} bytes`,
    );
  }
  for (const cap of found.capabilities) console.log(`  capability ${hex(cap.id, 2)} at ${hex(cap.offset, 2)}`);
  if (found.msix) {
    const m = found.msix;
    console.log(
      `  MSI-X: ${m.tableSize} vectors, table BAR${m.tableBar}+${hex(m.tableOffset, 3)}, PBA BAR${m.pbaBar}+${hex(m.pbaOffset, 3)}`,
    );
  }
  console.log(
    `  IVPosition ${device.mmioRead(0, 8, 4)}; registers IntrMask ${hex(device.mmioRead(0, 0, 4), 8)}, IntrStatus ${hex(device.mmioRead(0, 4, 4), 8)}`,
  );
  console.log(`  eventfd doorbells: V8 fast calls ${fastCallStatus()}`);
  device.close();
}

async function demo(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      peers: { type: 'string', default: '3' },
      vectors: { type: 'string', default: '2' },
      size: { type: 'string', default: '1M' },
      duration: { type: 'string', default: '5' },
      json: { type: 'boolean', default: false },
    },
  });
  const tty = process.stdout.isTTY === true && !values.json;
  let progressShown = false;
  const summary = await runDemo({
    peers: Number(values.peers),
    vectors: Number(values.vectors),
    size: parseSize(values.size!),
    durationMs: Number(values.duration) * 1000,
    cliPath: fileURLToPath(import.meta.url),
    onProgress: values.json
      ? undefined
      : (line) => {
          progressShown = true;
          process.stdout.write(tty ? `\r${line}` : `${line}\n`);
        },
    onStaleRemoved: values.json
      ? undefined
      : (paths) => {
          process.stdout.write(`removed what an earlier demo that died left behind: ${paths.join(', ')}\n`);
        },
  }).catch((err: unknown) => {
    // Finish the progress line, so the error does not overwrite it.
    if (tty && progressShown) process.stdout.write('\n');
    throw err;
  });
  if (values.json) process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
  else process.stdout.write(formatSummary(summary));
  return summary.messages.corrupt === 0 ? 0 : 1;
}

// The benchmarks are TypeScript sources bundled at bench time, so they run from a checkout.
function bench(args: string[]): number {
  const root = join(dirname(fileURLToPath(import.meta.url)), '..');
  if (!existsSync(join(root, 'scripts', 'run-bench.mjs'))) {
    process.stderr.write(
      'ivshmem bench: the benchmarks need the source checkout (bench/, scripts/); run npm run bench there\n',
    );
    return 1;
  }
  for (const step of [
    ['scripts/bundle.mjs', '--bench'],
    ['scripts/run-bench.mjs', ...args],
  ]) {
    const r = spawnSync(process.execPath, step, { cwd: root, stdio: 'inherit' });
    if (r.status !== 0) return r.status ?? 1;
  }
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'info':
      await info(rest);
      return 0;
    case 'demo':
      return demo(rest);
    case 'bench':
      return bench(rest);
    case '__demo-peer':
      await runPeer(rest[0], Number(rest[1]));
      return 0;
    case 'server':
      return serverCommand(rest);
    case 'client':
      return clientCommand(rest);
    case undefined:
    case 'help':
    case '-h':
    case '--help':
      process.stdout.write(USAGE);
      return command === undefined ? 1 : 0;
    default:
      process.stderr.write(`ivshmem: unknown command ${JSON.stringify(command)}\n${USAGE}`);
      return 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const e = err as { code?: string; message?: string };
    process.stderr.write(`ivshmem: ${e.message ?? String(err)}${e.code ? ` (${e.code})` : ''}\n`);
    process.exitCode = 1;
  },
);
