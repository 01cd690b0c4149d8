// What a link does with a route change the device refuses. Links apply the server's or the
// directory's announcements inside event callbacks, where a throw has no caller and would end the
// process: a refused route is the other side's fault, reported on the connection as a protocol
// error like any other bad message. Anything that is not an IvshmemError is a bug and goes on up.
import { IvshmemError } from '../errors.js';

export interface ProtocolErrorSink {
  emit(event: 'protocol-error', err: IvshmemError): boolean;
}

export function reportRefusal(connection: ProtocolErrorSink, change: () => unknown): void {
  try {
    change();
  } catch (err) {
    if (!(err instanceof IvshmemError)) throw err;
    connection.emit('protocol-error', err);
  }
}
