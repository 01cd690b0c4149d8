// Boots the cached Debian guest in v86 (in this process) with an IvshmemDevice attached through
// V86Transport, and runs shell commands over the serial console. Each command ends with an echo
// of an arithmetic marker ($((n+0))): the echoed command line cannot match the printed result.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { IvshmemDevice } from '../../src/device/device.js';
import { V86Transport } from '../../src/monitors/v86/v86-transport.js';
import type { V86Emulator } from '../../src/monitors/v86/v86-transport.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const require = createRequire(import.meta.url);

interface Prepare {
  checkCache(): { abi: string } | null;
  GUEST_DIR: string;
}

/** Why the guest cannot boot here, or null. */
export async function v86Unavailable(): Promise<string | null> {
  const prepare = (await import(`${root}scripts/prepare-v86-guest.mjs`)) as Prepare;
  if (prepare.checkCache() === null)
    return `no guest image in ${prepare.GUEST_DIR}: run node scripts/prepare-v86-guest.mjs (.ci/run does)`;
  try {
    require.resolve('v86/build/v86.wasm');
  } catch {
    return 'the v86 package is not installed (npm install)';
  }
  return null;
}

export interface Guest {
  /** Runs a command; resolves with everything printed up to its end marker. */
  run(command: string, timeoutMs?: number): Promise<string>;
  /** Sends a command without waiting. */
  send(command: string): void;
  waitFor(text: string, timeoutMs?: number): Promise<void>;
  output(): string;
  /** Calls `listener` with each chunk of console output as it arrives (timing); returns an unsubscribe. */
  onOutput(listener: (chunk: string) => void): () => void;
  stop(): Promise<void>;
}

export async function bootGuest(device: IvshmemDevice, transport: V86Transport, timeoutMs = 90_000): Promise<Guest> {
  const { V86 } = (await import('v86')) as unknown as {
    V86: new (o: object) => V86Emulator & {
      add_listener(e: string, f: (x: never) => void): void;
      run(): void;
      stop(): Promise<void>;
      destroy(): Promise<void>;
      serial0_send(s: string): void;
    };
  };
  const { guestEmulatorOptions } = (await import(`${root}scripts/v86-guest-options.mjs`)) as {
    guestEmulatorOptions(o?: object): object;
  };
  const emulator = new V86(guestEmulatorOptions());
  let text = '';
  const listeners = new Set<(chunk: string) => void>();
  emulator.add_listener('serial0-output-byte', (byte: number) => {
    const c = String.fromCharCode(byte);
    text += c;
    for (const l of listeners) l(c);
  });
  emulator.add_listener('emulator-loaded', () => {
    transport.attach(emulator, device);
    emulator.run();
  });
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await emulator.stop();
    await emulator.destroy();
  };
  const waitFor = async (marker: string, ms = 30_000, from = 0) => {
    const end = Date.now() + ms;
    while (text.indexOf(marker, from) < 0) {
      if (Date.now() > end)
        throw new Error(`the guest never printed ${marker}; its console ended with:\n${text.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  try {
    await waitFor('READY-42', timeoutMs);
  } catch (err) {
    await stop();
    throw err;
  }
  let n = 100;
  return {
    send: (command) => emulator.serial0_send(`${command}\n`),
    waitFor: (marker, ms) => waitFor(marker, ms),
    output: () => text,
    onOutput(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    stop,
    async run(command, ms = 30_000) {
      const id = n++;
      const from = text.length;
      emulator.serial0_send(`${command}\necho END-$((${id}+0))\n`);
      await waitFor(`END-${id}`, ms, from);
      return text.slice(from, text.indexOf(`END-${id}`, from));
    },
  };
}
