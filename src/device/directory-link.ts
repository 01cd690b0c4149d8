// Joins a device to a peer directory (no eventfds: signal buffers in SharedArrayBuffers), through
// the same door as the server link: every peer's signals become routes in the core (the handle
// names the peer's buffer and vector for the SignalDoorbell), our own vectors are watched on the
// event loop with Atomics.waitAsync unless the embedder waits on them, and a peer that leaves
// loses its routes before anyone could ring it again.
import { SignalDoorbell } from '../os/signals.js';
import type { SignalWatcher, Signals } from '../os/signals.js';
import type { DirectoryConnection } from '../protocol/directory-connection.js';
import { publishDeviceClose, publishDeviceError, publishDeviceJoin, publishDevicePeer } from './events.js';
import type { LinkTarget } from './model.js';
import { reportRefusal } from './link-errors.js';

/** Where a directory-joined device's doorbells go. */
export function directoryDoorbell(): SignalDoorbell {
  return new SignalDoorbell();
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
