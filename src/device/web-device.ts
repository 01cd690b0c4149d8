// WebDevice: the ivshmem device where there is no native addon and no kernel object — a browser
// page's Web Workers, or any JavaScript runtime with SharedArrayBuffer and Atomics. The guest sees
// what it sees of IvshmemDevice (both are DeviceModel); what differs is only where the device comes
// from: a peer directory (PeerDirectory.connect(), doorbells rung with Atomics) or a buffer the
// page made. Server sockets, shm names, eventfds and hand-overs are Node's and are refused here.
import { checkKnownKeys, IvshmemError } from '../errors.js';
import type { Signals } from '../os/signals.js';
import type { DirectoryConnection } from '../protocol/directory-connection.js';
import { joinDirectory } from './directory-link.js';
import type { DirectoryLink } from './directory-link.js';
import { DeviceModel } from './model.js';
import { OPTION_KEYS, resolveOptions } from './options.js';
import type { IvshmemDeviceOptions, ResolvedOptions } from './options.js';

/** IvshmemDevice's options that mean something without Node: no `server`, no `handover`, buffers only as `memory`. */
export type WebDeviceOptions = Omit<
  IvshmemDeviceOptions,
  'server' | 'handover' | 'legacy' | 'requireSealedMemory' | 'memory'
> & {
  /** BAR2's bytes when there is no directory: a SharedArrayBuffer to share with other workers, or an ArrayBuffer. */
  memory?: ArrayBuffer | SharedArrayBuffer;
};

/** The options that need Node (a socket, a hand-over of fds, the socket protocol's variants). */
const NODE_ONLY_KEYS = ['server', 'handover', 'legacy', 'requireSealedMemory'];
const WEB_OPTION_KEYS = OPTION_KEYS.filter((k) => !NODE_ONLY_KEYS.includes(k));

export class WebDevice extends DeviceModel {
  #link: DirectoryLink | undefined = undefined;
  #closed = false;

  /** Creates a device; with `directory`, resolves once the directory gave its id and memory. */
  static async create(options: WebDeviceOptions): Promise<WebDevice> {
    if (typeof options === 'object' && options !== null) checkKnownKeys(options, WEB_OPTION_KEYS);
    const o = resolveOptions(options);
    if (o.source !== undefined) {
      throw new IvshmemError(
        'ERR_IVSHMEM_INVALID_OPTION',
        'a WebDevice cannot open shared memory by name: pass a SharedArrayBuffer, or join a directory',
      );
    }
    if (o.directory === undefined) return new WebDevice(o);
    const { device, link } = await joinDirectory(
      o,
      o.directory,
      (resolved) => new WebDevice(resolved),
      (device) => device.linkTarget(false),
    );
    device.#link = link;
    return device;
  }

  private constructor(o: ResolvedOptions) {
    super(o, -1);
  }

  /** The peer directory connection (its id, peers, memory) of a device created with `directory`, or undefined. */
  get directory(): DirectoryConnection | undefined {
    return this.#link?.connection;
  }

  /** Our own vectors' signal buffer, for a worker that waits on it itself (vectorWait: 'manual'). */
  get ownSignals(): Signals | undefined {
    return this.#link?.connection.own;
  }

  /** Leaves the directory (the other peers hear this device has left); idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.retire('the device is closed');
    this.#link?.close(); // its 'releasing' withdraws the routes and BARs; this covers a link already gone
    this.releaseGuest('the device is closed');
  }

  get closed(): boolean {
    return this.#closed;
  }
}
