// A program of a user's project that installed the packed ivshmem-ts: test/tools/package.test.ts
// copies it into that project, so 'ivshmem-ts' resolves to the installed package, never to this
// checkout. It connects to the server as an IvshmemClient and prints its id and the addon file
// this process mapped; then `wait` prints the first interrupt it gets, and `ring PEER` rings
// vector 0 of PEER. Both then leave.
// usage: node package-peer.mjs SOCKET wait | SOCKET ring PEER
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { IvshmemClient } from 'ivshmem-ts';

const [socket, role, peerArg] = process.argv.slice(2);
const client = await IvshmemClient.connect(socket);
// The kernel's word for which addon was loaded, rather than the loader's.
const addon = readFileSync('/proc/self/maps', 'utf8')
  .split('\n')
  .map((line) => line.split(/\s+/).slice(5).join(' '))
  .find((file) => file.endsWith('.node'));
console.log(`id ${client.id} addon ${addon}`);

if (role === 'wait') {
  const [vector] = await once(client, 'interrupt');
  console.log(`interrupt vector ${vector}`);
} else {
  const peer = Number(peerArg);
  // A peer already there is announced in the setup; one that joins later, by its first vector.
  while (!client.peers.has(peer)) await once(client, 'join');
  client.ring(peer, 0);
  console.log(`rang ${peer}`);
}
client.close();
