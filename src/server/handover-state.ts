// What one ivshmem server hands another so that the second can serve the first one's clients
// without any of them noticing: every fd it owns (by number, in the process holding them) and
// the state that goes with them. handover.ts moves it between processes.

/** One connected client: its socket, its eventfds, and what is still waiting to be written to it. */
export interface HandoverPeer {
  id: number;
  socket: number;
  vectors: number[];
  /** Messages the socket could not take yet, in order; fd is one of the server's own fds or -1. */
  queue: { value: bigint; fd: number }[];
  /** The queue length that drops this client (Infinity while its setup is still queued). */
  queueLimit: number;
  announced: boolean;
  joined: boolean;
}

export interface HandoverState {
  socketPath: string;
  /** The listening socket, bound at socketPath. */
  listener: number;
  /** The shared memory object. */
  memory: number;
  memorySource: { shm: string } | { hugetlbfs: string };
  /** The lock that tells other servers the shm name is served (-1: none): passed on, it holds. */
  memoryLock?: number;
  /** The first server created the shm name, so whoever serves it last removes it. */
  memoryCreated?: boolean;
  vectors: number;
  /** Where the round-robin id counter stands. */
  nextId: number;
  legacy: boolean;
  stallTimeoutMs: number;
  maxQueuedMessages: number;
  /** Running counters, so stats() goes on counting across the hand-over. */
  counters: Record<string, number>;
  refusals: Record<string, number>;
  /** In connection order. */
  peers: HandoverPeer[];
  /** The peer state table the server keeps in the memory, if it has one. */
  stateTable?: { offset: number; slots: number };
}
