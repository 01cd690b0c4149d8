// Joins a device to an ivshmem server, the one door through which what the server says about peers
// enters the device: every eventfd the server announces becomes a route in the device core (the
// route handle is the eventfd number, rung by one write) and in the transport's fast-path hooks in
// the same step, every one of our own vectors is watched on the event loop (unless the embedder
// waits on them) and fires the core's interrupt logic, and a peer that leaves, or a connection that
// lets go of its fds, loses its routes before those eventfds are closed.
import { FdWatcher } from '../os/fd-watcher.js';
import type { ServerConnection } from '../protocol/connection.js';
import type { LinkTarget } from './model.js';
import { reportRefusal } from './link-errors.js';
import { publishDeviceClose, publishDeviceError, publishDeviceJoin, publishDevicePeer } from './events.js';

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
    for (const [peer, eventfds] of connection.peers)
      eventfds.forEach((e, vector) => target.peerVector(peer, vector, e.fd));
    connection.ownVectors.forEach((e, vector) => this.#own(target, vector, e.fd));
    connection.on('peer-vector', (peer, vector, e) => {
      reportRefusal(this.connection, () => target.peerVector(peer, vector, e.fd));
      publishDevicePeer({ socketPath: connection.path, id, peer, change: 'vector', vectors: vector + 1 });
    });
    connection.on('own-vector', (vector, e) => reportRefusal(this.connection, () => this.#own(target, vector, e.fd)));
    connection.on('peer-left', (peer) => {
      const vectors = connection.peers.get(peer)?.length ?? 0;
      reportRefusal(this.connection, () => target.peerLeft(peer));
      publishDevicePeer({ socketPath: connection.path, id, peer, change: 'left', vectors });
    });
    // Whoever releases the fds (our close, a hand-over, or a caller closing the connection itself),
    // our watchers stop first: a watcher left on a closed fd number would drain whatever file
    // takes that number next, and fire a vector of a device that is gone.
    connection.once('releasing', (why) => {
      this.#stopWatching();
      target.releasing(why);
    });
    connection.on('protocol-error', (err) =>
      publishDeviceError({ socketPath: connection.path, id, code: err.code, message: err.message }),
    );
    connection.on('close', (reason) => publishDeviceClose({ socketPath: connection.path, id, reason }));
    publishDeviceJoin({
      socketPath: connection.path,
      id,
      vectors: connection.ownVectors.length,
      peers: [...connection.peers.keys()],
    });
  }

  #own(target: LinkTarget, vector: number, fd: number): void {
    target.ownVector(vector, fd);
    if (!this.#watch) return;
    const watcher = FdWatcher.forSignals(fd, (err) => {
      if (err === null && !this.#closed) target.fireVector(vector);
    }).started();
    this.#watchers.push(watcher);
  }

  /** Stops watching our vectors and reading the server, and describes the connection for its next owner. */
  handOver(): ReturnType<ServerConnection['handOver']> {
    return this.connection.handOver(); // 'releasing' stops our watchers first
  }

  #stopWatching(): void {
    for (const w of this.#watchers) w.close();
    this.#watchers.length = 0;
  }

  /** Stops watching and closes the connection with every fd it received. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#stopWatching();
    this.connection.close();
  }
}
