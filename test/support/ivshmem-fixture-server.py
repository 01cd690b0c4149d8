#!/usr/bin/env python3
# A minimal ivshmem server for one QEMU ivshmem-doorbell client, used by test/interop/qemu-abi.test.ts.
#
#   ivshmem-fixture-server.py SOCKET_PATH ID VECTORS [SHM_BYTES]
#
# Listens on SOCKET_PATH and prints "listening" on stdout. The first client gets, each message an
# 8-byte little-endian int64 sent with one sendmsg: 0 (protocol version), ID, -1 with a memfd of
# SHM_BYTES (default 1 MiB), then VECTORS times ID with one eventfd (the client's own vectors).
# The client then prints "ready".
#
# stdin commands, one per line, each answered by one stdout line:
#   fire V   write 1 to eventfd V, then wait until the client has drained it: "ok" or "timeout"
#   wait V   wait until eventfd V is not signalled (after a doorbell write): "ok" or "timeout"
#   wait all the same for every vector
#   quit     exit
# Anything else answers "error ...". The server exits when stdin closes, unlinking its socket; a
# hard lifetime limit (alarm) bounds it even if nobody closes stdin.
import os
import select
import signal
import socket
import struct
import sys
import threading
import time

DRAIN_DEADLINE_S = 2.0
LIFETIME_S = 600


def main() -> int:
    if len(sys.argv) < 4:
        print('usage: ivshmem-fixture-server.py SOCKET_PATH ID VECTORS [SHM_BYTES]', file=sys.stderr)
        return 2
    path = sys.argv[1]
    peer_id = int(sys.argv[2])
    vectors = int(sys.argv[3])
    shm_bytes = int(sys.argv[4]) if len(sys.argv) > 4 else 1 << 20
    signal.signal(signal.SIGALRM, lambda *_: os._exit(3))
    signal.alarm(LIFETIME_S)

    shm = os.memfd_create('ivshmem-fixture')
    os.ftruncate(shm, shm_bytes)
    efds = [os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC) for _ in range(vectors)]
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    clients = []
    lock = threading.Lock()

    def out(line: str) -> None:
        with lock:
            sys.stdout.write(line + '\n')
            sys.stdout.flush()

    def msg(value: int) -> bytes:
        return struct.pack('<q', value)

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        clients.append(conn)
        conn.sendall(msg(0))
        conn.sendall(msg(peer_id))
        socket.send_fds(conn, [msg(-1)], [shm])
        for fd in efds:
            socket.send_fds(conn, [msg(peer_id)], [fd])
        out('ready')

    def signalled(fd: int) -> bool:
        p = select.poll()
        p.register(fd, select.POLLIN)
        return len(p.poll(0)) > 0

    def wait_drained(fds) -> str:
        deadline = time.monotonic() + DRAIN_DEADLINE_S
        while any(signalled(fd) for fd in fds):
            if time.monotonic() > deadline:
                return 'timeout'
            time.sleep(0.0002)
        return 'ok'

    threading.Thread(target=serve, daemon=True).start()
    out('listening')
    try:
        for raw in sys.stdin:
            words = raw.split()
            if not words:
                continue
            try:
                if words[0] == 'quit':
                    break
                if words[0] == 'fire' and len(words) == 2:
                    fd = efds[int(words[1])]
                    os.eventfd_write(fd, 1)
                    out(wait_drained([fd]))
                elif words[0] == 'wait' and len(words) == 2:
                    fds = efds if words[1] == 'all' else [efds[int(words[1])]]
                    out(wait_drained(fds))
                else:
                    out('error unknown command')
            except (ValueError, IndexError) as e:
                out('error ' + str(e))
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
        for s in clients:
            s.close()
        listener.close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
