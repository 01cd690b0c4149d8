// IvshmemDevice: the ivshmem PCI function a monitor embeds, and the only object a monitor talks
// to. What the guest sees is DeviceModel's (model.ts, no I/O); this class adds what needs the OS:
// creating the device on shared memory or on an ivshmem server (its id, memory and routes), the
// link that keeps the routes in step with the server, the hand-over to another process, and
// closing what it opened.
import { IvshmemError } from '../errors.js';
import { SharedMemory } from '../os/shared-memory.js';
import { eventfdDoorbell } from '../os/eventfd.js';
import { ServerConnection, closeReceivedFds } from '../protocol/connection.js';
import { DeviceModel } from './model.js';
import { checkBar2Size, resolveOptions } from './options.js';
import type { DeviceHandover, IvshmemDeviceOptions, ResolvedOptions } from './options.js';
import { DoorbellLink } from './server-link.js';
import { joinDirectory } from './directory-link.js';
import type { DirectoryLink } from './directory-link.js';
import type { DirectoryConnection } from '../protocol/directory-connection.js';
import type { Signals } from '../os/signals.js';

export type { DeviceCounters, SharedMemoryInfo, VectorCounters } from './model.js';

export class IvshmemDevice extends DeviceModel {
  readonly #shared: SharedMemory | undefined;
  #link: DoorbellLink | undefined = undefined;
  #directoryLink: DirectoryLink | undefined = undefined;
  #closed = false;

  /** Creates a device; resolves once its id and memory are known (QEMU's revision-1 guarantee). */
  static async create(options: IvshmemDeviceOptions): Promise<IvshmemDevice> {
    let o: ResolvedOptions;
    try {
      o = resolveOptions(options);
    } catch (err) {
      // A refused hand-over still owns the fds it was given: they must not leak.
      closeReceivedFds((options as IvshmemDeviceOptions | undefined)?.handover?.connection?.fds);
      throw err;
    }
    if (o.handover !== undefined) return IvshmemDevice.#takeOver(o, o.handover);
    if (o.server !== undefined) return IvshmemDevice.#join(o, o.server);
    if (o.directory !== undefined) return IvshmemDevice.#joinDirectory(o, o.directory);
    if (o.source === undefined) return new IvshmemDevice(o, undefined);
    const shared = SharedMemory.open(o.source, { size: o.size });
    try {
      checkBar2Size(shared.size, shared.size, o.use64, o.mode);
      return new IvshmemDevice({ ...o, size: shared.size, memory: shared.map() }, shared);
    } catch (err) {
      // A size the kernel will not map (2^46 on most machines) must not leave a sparse object.
      shared.removeCreatedName();
      shared.close();
      throw err;
    }
  }

  // A device on a server: id, memory and routes come from it; creation resolves once id and
  // memory are known, so the guest never sees an unset IVPosition.
  static async #join(o: ResolvedOptions, path: string): Promise<IvshmemDevice> {
    const conn = await ServerConnection.connect(path, {
      vectors: o.vectors,
      legacy: o.legacy,
      setupTimeoutMs: o.setupTimeoutMs,
      requireSealedMemory: o.requireSealedMemory,
    });
    return IvshmemDevice.#onConnection(o, conn);
  }

  // A device in a peer directory: the memory is a SharedArrayBuffer already and the routes are
  // signal buffers rung with Atomics; no fd and no native call anywhere (directory-link.ts).
  static async #joinDirectory(
    o: ResolvedOptions,
    port: NonNullable<ResolvedOptions['directory']>,
  ): Promise<IvshmemDevice> {
    const { device, link } = await joinDirectory(
      o,
      port,
      (options) => new IvshmemDevice(options, undefined),
      (device) => device.linkTarget(false),
    );
    device.#directoryLink = link;
    return device;
  }

  // A device handed over by another process: its connection as it was (same id, peers, memory),
  // then its state. The migration blocker does not apply: the memory itself comes along.
  static async #takeOver(o: ResolvedOptions, h: DeviceHandover): Promise<IvshmemDevice> {
    const { description, fds } = h.connection;
    if (description?.vectors !== o.vectors) {
      closeReceivedFds(fds);
      throw new IvshmemError(
        'ERR_IVSHMEM_HANDOVER',
        `the handed-over device has ${description?.vectors} vectors, this one ${o.vectors}`,
      );
    }
    const conn = ServerConnection.adopt(description, fds, { requireSealedMemory: o.requireSealedMemory });
    const device = IvshmemDevice.#onConnection({ ...o, masterOption: h.master ? 'on' : 'off' }, conn, true);
    try {
      device.decodeState(h.state);
    } catch (err) {
      device.close();
      throw err;
    }
    return device;
  }

  static #onConnection(o: ResolvedOptions, conn: ServerConnection, handedOver = false): IvshmemDevice {
    try {
      const memory = conn.memory!;
      checkBar2Size(memory.size, memory.size, o.use64, o.mode);
      const masterOption = o.masterOption;
      if (masterOption === 'on' && conn.id !== 0 && !handedOver) {
        throw new IvshmemError(
          'ERR_IVSHMEM_MASTER',
          `master must connect to the server before any peers (the server gave id ${conn.id})`,
        );
      }
      const master = masterOption === 'on' || (masterOption === 'auto' && conn.id === 0);
      let mapped: ArrayBuffer;
      try {
        mapped = memory.map();
      } catch (err) {
        // e.g. a file the server opened read-only, or a memfd it sealed against writes
        throw new IvshmemError(
          'ERR_IVSHMEM_PROTOCOL_SHM',
          `cannot map the server's shared memory: ${(err as Error).message}`,
          { cause: err },
        );
      }
      const device = new IvshmemDevice(
        { ...o, id: conn.id, master, size: memory.size, memory: mapped, doorbell: eventfdDoorbell },
        undefined,
      );
      device.#link = new DoorbellLink(conn, device.linkTarget(), o.vectorWait === 'loop');
      return device;
    } catch (err) {
      conn.close();
      throw err;
    }
  }

  private constructor(o: ResolvedOptions, shared: SharedMemory | undefined) {
    super(o, shared?.fd ?? -1);
    this.#shared = shared;
  }

  /** The server connection of a device created with `server` (its id, peers, memory), or undefined. */
  get connection(): ServerConnection | undefined {
    return this.#link?.connection;
  }

  /** The peer directory connection of a device created with `directory`, or undefined. */
  get directory(): DirectoryConnection | undefined {
    return this.#directoryLink?.connection;
  }

  /**
   * Our own vectors' signals on a directory-joined device, for embedders that wait on them
   * themselves (vectorWait: 'manual': Signals.waitBlocking in the vCPU's worker), or undefined.
   */
  get ownSignals(): Signals | undefined {
    return this.#directoryLink?.connection.own;
  }

  /** Our own vectors' eventfds (index = vector), for embedders that wait on them themselves. */
  get ownVectorFds(): number[] {
    return this.#link?.connection.ownVectors.map((e) => e.fd) ?? [];
  }

  /**
   * Hands this device over to another process (a monitor being upgraded or restarted): stops
   * using its server connection and returns what IvshmemDevice.create({ handover }) needs there.
   * The server and the peers notice nothing: same socket, same id, same eventfds. The fds in the
   * result are still this device's until close(): send them (SCM_RIGHTS, or as inherited stdio),
   * then close() it. Guest accesses are refused from now on (ERR_IVSHMEM_CLOSED).
   */
  handOver(): DeviceHandover {
    this.checkLive();
    const link = this.#link;
    if (link === undefined)
      throw new IvshmemError('ERR_IVSHMEM_HANDOVER', 'only a device on a server can be handed over');
    const state = this.encodeState(false);
    const connection = link.handOver(); // the link hears 'releasing': from here on guest accesses are refused
    return { connection, state, master: this.master };
  }

  /** Releases the device and the shared memory it opened; idempotent. Later calls throw ERR_IVSHMEM_CLOSED. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.retire('the device is closed');
    this.#link?.close();
    this.#directoryLink?.close();
    // A linked device has done this on its connection's 'releasing'; one on memory of its own
    // withdraws its routes and BARs here, before that memory is unmapped.
    this.releaseGuest('the device is closed');
    this.#shared?.close();
  }

  get closed(): boolean {
    return this.#closed;
  }
}
