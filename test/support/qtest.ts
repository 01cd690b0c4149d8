// Drives a real QEMU through its qtest line protocol (-qtest stdio): port I/O for PCI configuration
// space (0xcf8/0xcfc), guest-physical reads and writes for BARs and RAM. One command at a time,
// each awaited with a time limit. QEMU starts paused (-S), so no firmware touches the devices.
import { accessSync, constants, existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { LineProcess } from './line-process.js';

export const DEFAULT_QEMU = '/usr/bin/qemu-system-x86_64';

/** Why QEMU cannot be used here, or null when `qemu` runs and knows the ivshmem devices. */
export function qemuUnavailableReason(qemu = DEFAULT_QEMU): string | null {
  if (!existsSync(qemu)) return `${qemu} is not installed`;
  try {
    accessSync(qemu, constants.X_OK);
  } catch {
    return `${qemu} is not executable`;
  }
  const r = spawnSync(qemu, ['-machine', 'none', '-device', 'help'], { encoding: 'utf8', timeout: 15_000 });
  if (r.error !== undefined) return `${qemu} -device help failed: ${r.error.message}`;
  const out = `${r.stdout}${r.stderr}`;
  if (!out.includes('ivshmem-plain') || !out.includes('ivshmem-doorbell'))
    return `${qemu} has no ivshmem-plain/ivshmem-doorbell device`;
  return null;
}

export interface QTestOptions {
  /** The QEMU binary. */
  qemu?: string;
  /** Time limit of one command, in ms. */
  timeoutMs?: number;
  /** Hard lifetime of the QEMU process, in seconds (enforced by coreutils timeout when present). */
  lifetimeS?: number;
}

const SIZE_SUFFIX: Record<number, string> = { 1: 'b', 2: 'w', 4: 'l', 8: 'q' };
const PORT_SUFFIX: Record<number, string> = { 1: 'b', 2: 'w', 4: 'l' };

function hex(v: number | bigint): string {
  return `0x${v.toString(16)}`;
}

export class QTestError extends Error {}

export class QTest {
  readonly #proc: LineProcess;
  /** PCI slot (device number on bus 0) used by cfgRead/cfgWrite; set by findDevice(). */
  slot = -1;
  /** The last 0xcf8 value written, so repeated accesses to one dword skip the address write. */
  #cf8: number | null = null;
  /** Commands sent, for statistics. */
  commands = 0;

  private constructor(proc: LineProcess) {
    this.#proc = proc;
  }

  /** Starts `qemu-system-x86_64 -machine pc` paused, with `extraArgs` (the devices) appended. */
  static async start(extraArgs: readonly string[], options: QTestOptions = {}): Promise<QTest> {
    const qemu = options.qemu ?? DEFAULT_QEMU;
    const qemuArgs = [
      '-machine',
      'pc',
      '-accel',
      'tcg',
      '-S',
      '-qtest',
      'stdio',
      '-display',
      'none',
      '-nodefaults',
      '-m',
      '64M',
      ...extraArgs,
    ];
    const lifetime = String(options.lifetimeS ?? 300);
    // QEMU does not exit when qtest's stdin closes: bound its life in case this process dies.
    const useTimeout = existsSync('/usr/bin/timeout');
    const proc = useTimeout
      ? new LineProcess('/usr/bin/timeout', ['-k', '5', lifetime, qemu, ...qemuArgs], {
          name: 'qemu',
          timeoutMs: options.timeoutMs ?? 5000,
        })
      : new LineProcess(qemu, qemuArgs, { name: 'qemu', timeoutMs: options.timeoutMs ?? 5000 });
    const q = new QTest(proc);
    try {
      // The first answer arrives once QEMU (and every device's realize) is up.
      await q.cmd('readl 0x0', 20_000);
    } catch (error) {
      await q.close();
      throw error;
    }
    return q;
  }

  get running(): boolean {
    return this.#proc.running;
  }

  /** Sends one command; resolves with the text after "OK" (trimmed), rejects on ERR/FAIL. */
  async cmd(line: string, timeoutMs?: number): Promise<string> {
    this.commands++;
    const answer = await this.#proc.request(
      line,
      (l) => l.startsWith('OK') || l.startsWith('ERR') || l.startsWith('FAIL'),
      timeoutMs,
    );
    if (!answer.startsWith('OK'))
      throw new QTestError(`qtest ${JSON.stringify(line)} answered ${JSON.stringify(answer)}`);
    return answer.slice(2).trim();
  }

  async #value(line: string): Promise<bigint> {
    const text = await this.cmd(line);
    const token = text.split(/\s+/)[0];
    if (!/^0x[0-9a-f]+$/i.test(token))
      throw new QTestError(`qtest ${JSON.stringify(line)} gave no value: ${JSON.stringify(text)}`);
    return BigInt(token);
  }

  // ---- port I/O and PCI configuration space (mechanism #1) ----

  async in(port: number, size: 1 | 2 | 4): Promise<number> {
    return Number(await this.#value(`in${PORT_SUFFIX[size]} ${hex(port)}`));
  }

  async out(port: number, size: 1 | 2 | 4, value: number): Promise<void> {
    await this.cmd(`out${PORT_SUFFIX[size]} ${hex(port)} ${hex(value >>> 0)}`);
  }

  async #select(slot: number, offset: number): Promise<void> {
    const address = (0x80000000 | (slot << 11) | (offset & 0xfc)) >>> 0;
    if (this.#cf8 === address) return;
    await this.out(0xcf8, 4, address);
    this.#cf8 = address;
  }

  async cfgReadAt(slot: number, offset: number, size: 1 | 2 | 4): Promise<number> {
    await this.#select(slot, offset);
    return this.in(0xcfc + (offset & 3), size);
  }

  async cfgWriteAt(slot: number, offset: number, size: 1 | 2 | 4, value: number): Promise<void> {
    await this.#select(slot, offset);
    await this.out(0xcfc + (offset & 3), size, value);
  }

  #slot(): number {
    if (this.slot < 0) throw new QTestError('no device selected: call findDevice() first');
    return this.slot;
  }

  /** A config read of the selected device (size 1, 2 or 4, not crossing a dword). */
  cfgRead(offset: number, size: 1 | 2 | 4): Promise<number> {
    return this.cfgReadAt(this.#slot(), offset, size);
  }

  cfgWrite(offset: number, size: 1 | 2 | 4, value: number): Promise<void> {
    return this.cfgWriteAt(this.#slot(), offset, size, value);
  }

  /** Finds the first function on bus 0 whose vendor/device dword matches; selects it. */
  async findDevice(vendorDevice = 0x11101af4): Promise<number> {
    for (let slot = 0; slot < 32; slot++) {
      if ((await this.cfgReadAt(slot, 0, 4)) === vendorDevice) {
        this.slot = slot;
        return slot;
      }
    }
    throw new QTestError(`no PCI device ${hex(vendorDevice)} on bus 0`);
  }

  // ---- guest-physical memory ----

  read(address: number | bigint, size: 1 | 2 | 4 | 8): Promise<bigint> {
    return this.#value(`read${SIZE_SUFFIX[size]} ${hex(address)}`);
  }

  async write(address: number | bigint, size: 1 | 2 | 4 | 8, value: number | bigint): Promise<void> {
    const v = BigInt.asUintN(size * 8, BigInt(value));
    await this.cmd(`write${SIZE_SUFFIX[size]} ${hex(address)} ${hex(v)}`);
  }

  /** `length` bytes of guest memory (qtest's hex-dump read). */
  async memRead(address: number | bigint, length: number): Promise<Uint8Array> {
    const text = await this.cmd(`read ${hex(address)} ${hex(length)}`);
    const m = /^0x([0-9a-f]*)$/i.exec(text.split(/\s+/)[0]);
    if (m === null || m[1].length !== 2 * length)
      throw new QTestError(`qtest read gave ${JSON.stringify(text.slice(0, 80))}`);
    return Uint8Array.from(Buffer.from(m[1], 'hex'));
  }

  async memWrite(address: number | bigint, bytes: Uint8Array): Promise<void> {
    await this.cmd(`write ${hex(address)} ${hex(bytes.length)} 0x${Buffer.from(bytes).toString('hex')}`);
  }

  /** Kills QEMU (SIGTERM, SIGKILL fallback); idempotent, never rejects. */
  close(): Promise<void> {
    return this.#proc.close(1000, 0);
  }
}
