// Worker-thread side of the native tests. workerData: { bundle, scenario, ... } where bundle is
// the path of the native wrappers' bundle (test/support/native-bundle.ts); fds arrive as plain
// numbers (they belong to the process; the addon itself loads once per thread). Reports go to
// the parent as messages.
import { pathToFileURL } from 'node:url';
import { parentPort, workerData } from 'node:worker_threads';

const { createWaiter, EventFd, SharedMemory, UnixSocket, native } = await import(pathToFileURL(workerData.bundle).href);
const post = (message) => parentPort.postMessage(message);

switch (workerData.scenario) {
  // A blocking or spin waiter occupying this thread until the parent signals its stopFd.
  case 'thread-waiter': {
    const waiter = createWaiter(workerData.kind, workerData.fds, { spinRounds: 1000 });
    post({ type: 'stopFd', fd: waiter.stopFd, value: waiter.stopValue });
    waiter.run((index, count) => post({ type: 'ready', index, count }));
    post({ type: 'stopped' });
    waiter.close();
    break;
  }

  // A loop waiter on this thread's event loop: closes after `reports` reports, and the thread ends.
  case 'loop-waiter': {
    const waiter = createWaiter('loop', workerData.fds);
    let left = workerData.reports;
    waiter.run((index, count) => {
      post({ type: 'ready', index, count });
      if (--left === 0) waiter.close();
    });
    post({ type: 'running' });
    break;
  }

  // Opens one of each resource and ends without closing any: the addon's cleanup hooks must.
  case 'leave-open': {
    const eventfd = EventFd.create();
    const memory = SharedMemory.open({ memfd: 'ivshmem-worker-leftover' }, { size: 65536 });
    new Uint8Array(memory.map())[0] = 1;
    const [a, b] = UnixSocket.pair();
    const watcher = new (native().FdWatcher)(eventfd.fd, true, () => {});
    watcher.start();
    const idle = createWaiter('loop', [EventFd.create().fd]);
    idle.run(() => {});
    post({ type: 'opened', fds: [eventfd.fd, memory.fd, a.fd, b.fd] });
    if (workerData.how === 'exit') process.exit(0); // ends this thread only
    watcher.unref(); // 'return': nothing keeps the thread's loop alive
    idle.unref();
    break;
  }

  default:
    throw new Error(`unknown scenario ${workerData.scenario}`);
}
