// A child process for test/os/worker-terminate.test.ts: again and again, a worker thread watches
// an eventfd on its event loop while this thread signals it as fast as it can, and the worker is
// terminated in the middle of that. The process must live through every round and say so.
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';

const [bundle, roundsArg] = process.argv.slice(2);
const { EventFd } = await import(bundle);
const rounds = Number(roundsArg);
const WATCHER = `
  import { workerData, parentPort } from 'node:worker_threads';
  const { createWaiter } = await import(workerData.bundle);
  const waiter = createWaiter('loop', [workerData.fd]);
  let seen = 0;
  waiter.run(() => { seen++; });
  parentPort.postMessage('watching');
`;
let signalled = 0;
for (let round = 0; round < rounds; round++) {
  const e = EventFd.create();
  const worker = new Worker(new URL(`data:text/javascript,${encodeURIComponent(WATCHER)}`), {
    workerData: { bundle: pathToFileURL(bundle).href, fd: e.fd },
  });
  await new Promise((resolve) => worker.once('message', resolve));
  const end = Date.now() + 5 + (round % 7);
  while (Date.now() < end) {
    e.signal();
    signalled++;
  }
  const stopping = worker.terminate();
  for (let i = 0; i < 200; i++) e.signal(); // doorbells still arriving while the worker goes
  await stopping;
  e.close();
}
console.log(JSON.stringify({ survived: rounds, signalled }));
