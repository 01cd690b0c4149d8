// Joins a device to a peer directory (no eventfds: signal buffers in SharedArrayBuffers), through
// the same door as the server link: every peer's signals become routes in the core (the handle
// names the peer's buffer and vector for the SignalDoorbell), our own vectors are watched on the
// event loop with Atomics.waitAsync unless the embedder waits on them, and a peer that leaves
// loses its routes before anyone could ring it again. Nothing here touches Node's I/O: the same
// join serves IvshmemDevice in Node and WebDevice in a browser.
import { IvshmemError } from '../errors.js';
import { SignalDoorbell } from '../os/signals.js';
import type { SignalWatcher, Signals } from '../os/signals.js';
import { DirectoryConnection } from '../protocol/directory-connection.js';
import type { PortLike } from '../protocol/directory-messages.js';
import { publishDeviceClose, publishDeviceError, publishDeviceJoin, publishDevicePeer } from './events.js';
import type { DeviceModel, LinkTarget } from './model.js';
import { reportRefusal } from './link-errors.js';
import { checkBar2Size } from './options.js';
import type { ResolvedOptions } from './options.js';

/**
 * Creates a device in the directory on the other end of `port`: as on a server, id, memory and
 * routes come from it, and creation resolves once id and memory are known, so the guest never
 * sees an unset IVPosition. `build` makes the device from the completed options; `target` gives
 * its link door (DeviceModel.linkTarget is protected, so only the device class can hand it out).
 */
export async function joinDirectory<D extends DeviceModel>(
  o: ResolvedOptions,
  port: PortLike,
  build: (options: ResolvedOptions) => D,
  target: (device: D) => LinkTarget,
): Promise<{ device: D; link: DirectoryLink }> {
  const conn = await DirectoryConnection.connect(port, { vectors: o.vectors, setupTimeoutMs: o.setupTimeoutMs });
  try {
    const size = conn.memory.byteLength;
    checkBar2Size(size, size, o.use64, o.mode);
    if (o.masterOption === 'on' && conn.id !== 0) {
      throw new IvshmemError(
        'ERR_IVSHMEM_MASTER',
        `master must join the directory before any peers (the directory gave id ${conn.id})`,
      );
    }
    const master = o.masterOption === 'on' || (o.masterOption === 'auto' && conn.id === 0);
    const doorbell = new SignalDoorbell();
    const device = build({ ...o, id: conn.id, master, size, memory: conn.memory, doorbell });
    return { device, link: new DirectoryLink(conn, doorbell, target(device), o.vectorWait === 'loop') };
  } catch (err) {
    conn.close();
    throw err;
  }
}

export class DirectoryLink {
  readonly connection: DirectoryConnection;
  readonly #doorbell: SignalDoorbell;
  readonly #slots = new Map<number, number>();
  #watcher: SignalWatcher | undefined;
  #closed = false;

  /** watch: false leaves waiting on our own vectors to the embedder (see vectorWait: 'manual'). */
  constructor(connection: DirectoryConnection, doorbell: SignalDoorbell, target: LinkTarget, watch: boolean) {
    this.connection = connection;
    this.#doorbell = doorbell;
    const where = `directory:${connection.id}`;
    const id = connection.id;
    for (const [peer, signals] of connection.peers) this.#peer(target, peer, signals);
    this.#own(target, connection.own);
    if (watch) this.#watcher = connection.own.watch((vector) => target.fireVector(vector));
    connection.on('peer', (peer, signals) => {
      reportRefusal(this.connection, () => this.#peer(target, peer, signals));
      publishDevicePeer({ socketPath: where, id, peer, change: 'vector', vectors: signals.vectors });
    });
    connection.on('peer-left', (peer) => {
      const slot = this.#slots.get(peer);
      reportRefusal(this.connection, () => target.peerLeft(peer));
      if (slot !== undefined) this.#doorbell.remove(slot);
      this.#slots.delete(peer);
      publishDevicePeer({
        socketPath: where,
        id,
        peer,
        change: 'left',
        vectors: connection.peers.get(peer)?.vectors ?? 0,
      });
    });
    // However the connection is closed, our watcher stops first: a ring after that must not fire
    // a vector of a device that is gone.
    connection.once('releasing', (why) => {
      this.#watcher?.close();
      target.releasing(why);
    });
    connection.on('protocol-error', (err) =>
      publishDeviceError({ socketPath: where, id, code: err.code, message: err.message }),
    );
    connection.on('close', (reason) => publishDeviceClose({ socketPath: where, id, reason }));
    publishDeviceJoin({ socketPath: where, id, vectors: connection.own.vectors, peers: [...connection.peers.keys()] });
  }

  #peer(target: LinkTarget, peer: number, signals: Signals): void {
    const slot = this.#doorbell.add(signals);
    this.#slots.set(peer, slot);
    for (let v = 0; v < signals.vectors; v++) target.peerVector(peer, v, this.#doorbell.handle(slot, v));
  }

  #own(target: LinkTarget, own: Signals): void {
    const slot = this.#doorbell.add(own); // a doorbell to ourselves rings our own vector, as in QEMU
    for (let v = 0; v < own.vectors; v++) target.ownVector(v, this.#doorbell.handle(slot, v));
  }

  /** Stops watching and leaves the directory. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#watcher?.close();
    this.connection.close();
  }
}
