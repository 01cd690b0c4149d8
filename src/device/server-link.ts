// Joins a device to an ivshmem server: every eventfd the server announces becomes a route in the
// device core (the route handle is the eventfd number, rung by one write), every one of our own
// vectors is watched on the event loop and fires the core's interrupt logic, and a peer that
// leaves loses its routes before its eventfds are closed.
import { IvshmemError } from '../errors.js';
import { FdWatcher } from '../os/fd-watcher.js';
import type { ServerConnection } from '../protocol/connection.js';
import { publishDeviceClose, publishDeviceError, publishDeviceJoin, publishDevicePeer } from './events.js';

export interface LinkTarget {
  connectPeerVector(peer: number, handle: number): number;
  disconnectPeer(peer: number): number;
  fireVector(vector: number): void;
}

export class DoorbellLink {
  readonly connection: ServerConnection;
  readonly #watchers: FdWatcher[] = [];
  #closed = false;

  readonly #watch: boolean;

  /** watch: false leaves waiting on our own vectors to the embedder (see vectorWait: 'manual'). */
  constructor(connection: ServerConnection, target: LinkTarget, watch = true) {
    this.connection = connection;
    this.#watch = watch;
    const id = connection.id;
    // What arrived with setup is already in the connection's tables; later changes come as events.
    for (const [peer, eventfds] of connection.peers) for (const e of eventfds) target.connectPeerVector(peer, e.fd);
    connection.ownVectors.forEach((e, vector) => this.#own(target, id, vector, e.fd));
    connection.on('peer-vector', (peer, vector, e) => {
      this.#report(() => target.connectPeerVector(peer, e.fd));
      publishDevicePeer({ socketPath: connection.path, id, peer, change: 'vector', vectors: vector + 1 });
    });
    connection.on('own-vector', (vector, e) => this.#report(() => this.#own(target, id, vector, e.fd)));
    connection.on('peer-left', (peer) => {
      const vectors = connection.peers.get(peer)?.length ?? 0;
      this.#report(() => target.disconnectPeer(peer));
      publishDevicePeer({ socketPath: connection.path, id, peer, change: 'left', vectors });
    });
    connection.on('protocol-error', (err) => publishDeviceError({ socketPath: connection.path, id, code: err.code, message: err.message }));
    connection.on('close', (reason) => publishDeviceClose({ socketPath: connection.path, id, reason }));
    publishDeviceJoin({ socketPath: connection.path, id, vectors: connection.ownVectors.length, peers: [...connection.peers.keys()] });
  }

  // These run inside the socket's watcher callback, where a throw would be fatal to the process:
  // a route the device refuses is the server's fault, reported like any other bad message.
  #report(change: () => unknown): void {
    try {
      change();
    } catch (err) {
      if (!(err instanceof IvshmemError)) throw err;
      this.connection.emit('protocol-error', err);
    }
  }

  #own(target: LinkTarget, id: number, vector: number, fd: number): void {
    target.connectPeerVector(id, fd); // a doorbell to ourselves rings our own vector, as in QEMU
    if (!this.#watch) return;
    const watcher = FdWatcher.forSignals(fd, (err) => {
      if (err === null && !this.#closed) target.fireVector(vector);
    }).started();
    this.#watchers.push(watcher);
  }

  /** Stops watching our vectors and reading the server, and describes the connection for its next owner. */
  handOver(): ReturnType<ServerConnection['handOver']> {
    const handover = this.connection.handOver();
    for (const w of this.#watchers) w.close();
    this.#watchers.length = 0;
    return handover;
  }

  /** Stops watching and closes the connection with every fd it received. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const w of this.#watchers) w.close();
    this.connection.close();
  }
}
