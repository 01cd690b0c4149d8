// Child-process side of the native tests: `node native-child.mjs BUNDLE SCENARIO [N]`, where
// BUNDLE is the native wrappers' bundle (test/support/native-bundle.ts). Exits 0 on success;
// anything else is reported on stderr with a non-zero exit code.
import { pathToFileURL } from 'node:url';

const [bundle, scenario, arg] = process.argv.slice(2);
const { createWaiter, EventFd, SharedMemory, native } = await import(pathToFileURL(bundle).href);

function fail(message) {
  process.stderr.write(`${message}\n`);
  process.exit(3);
}

switch (scenario) {
  case 'noop':
    break;

  // fd 3: shared memory, fd 4: eventfd to the parent, fd 5: eventfd from the parent (inherited
  // through stdio). Round i: write a value, ring the parent, wait for its answer (value + 1).
  case 'round-trips': {
    const rounds = Number(arg);
    const memory = SharedMemory.adopt(3);
    const view = new Int32Array(memory.map());
    const toParent = EventFd.adopt(4);
    const fromParent = createWaiter('blocking', [5]);
    for (let i = 1; i <= rounds; i++) {
      const value = i * 7919 - 1000;
      view[0] = value;
      toParent.signal();
      if (fromParent.waitOnce(10_000) !== 0) fail(`round ${i}: no answer within 10 s`);
      if (fromParent.lastCount !== 1) fail(`round ${i}: ${fromParent.lastCount} answers`);
      if (view[1] !== value + 1) fail(`round ${i}: answer ${view[1]}, expected ${value + 1}`);
    }
    fromParent.close();
    memory.close();
    toParent.close();
    native().close(5);
    break;
  }

  // A loop waiter on an eventfd nobody signals: unref() must let the process end by itself.
  case 'unref': {
    const e = EventFd.create();
    const waiter = createWaiter('loop', [e.fd]);
    waiter.run(() => fail('reported without a signal'));
    waiter.unref();
    process.on('exit', () => process.stdout.write('exited\n'));
    break;
  }

  // The control: a ref'd loop waiter keeps the process until it reports and is closed.
  case 'ref': {
    const e = EventFd.create();
    const waiter = createWaiter('loop', [e.fd]);
    waiter.run((index, count) => {
      process.stdout.write(`ready ${index} ${count}\n`);
      waiter.close();
      e.close();
    });
    setTimeout(() => {
      e.signal();
      e.signal();
    }, 50).unref(); // only the waiter keeps the process alive
    break;
  }

  // Opens an eventfd, a memfd mapping and an active watcher, then leaves without closing them:
  // 'exit' by process.exit(), 'return' by letting the event loop run dry (watcher unref'd).
  case 'leave-open': {
    const e = EventFd.create();
    const memory = SharedMemory.open({ memfd: 'ivshmem-child-leftover' }, { size: 65536 });
    new Uint8Array(memory.map()).fill(7);
    const watcher = new (native().FdWatcher)(e.fd, true, () => {});
    watcher.start();
    e.signal(); // a pending report, too
    if (arg === 'exit') process.exit(0);
    watcher.unref();
    break;
  }

  default:
    fail(`unknown scenario ${scenario}`);
}
