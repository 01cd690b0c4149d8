// Preloaded (node --import) into an ivshmem-server process by tests: prints every event the
// server publishes on its diagnostics channels to stderr, one "channel NAME JSON" line each.
import { subscribe } from 'node:diagnostics_channel';

for (const name of ['ivshmem:server:join', 'ivshmem:server:leave', 'ivshmem:server:refuse']) {
  subscribe(name, (message) => process.stderr.write(`channel ${name} ${JSON.stringify(message)}\n`));
}
