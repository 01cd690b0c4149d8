// How a client connection to an ivshmem server is described when it moves to another process
// (ServerConnection.handOver, then ServerConnection.adopt there): plain data, the fds beside it.

/**
 * A connection described for another process (see ServerConnection.handOver): `fds` travel beside
 * it in this order — the server socket (absent once the server went away), the memory, our
 * vectors, then each peer's vectors in the order of `peers`.
 */
export interface ConnectionHandover {
  format: 1;
  path: string;
  id: number;
  vectors: number;
  serverGone: boolean;
  own: number;
  peers: [peer: number, vectors: number][];
}
