#!/usr/bin/env python3
"""A TCP proxy that resets, every INTERVAL seconds, every connection it
carries that has moved more than 16 KiB (so handshakes complete and each
connection makes some progress), as a flaky network does: cut_proxy.py
LISTEN_PORT TARGET_PORT INTERVAL. Listens on 0.0.0.0 (the qemu guest reaches the host through
slirp), forwards to 127.0.0.1:TARGET_PORT, prints one line per cut with
the number of connections reset. For tests/vm/kernel_mount_test.sh."""
import socket
import struct
import sys
import threading
import time

listen_port, target_port, interval = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
lock = threading.Lock()
live = []


def pump(src, dst, moved):
    try:
        while True:
            b = src.recv(65536)
            if not b:
                break
            dst.sendall(b)
            moved[0] += len(b)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def cutter():
    while True:
        time.sleep(interval)
        with lock:
            busy = [x for x in live if x[2][0] > 16384]
            for x in busy:
                live.remove(x)
        gone = [s for x in busy for s in x[:2]]
        for s in gone:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
            except OSError:
                pass
        print("cut %d" % (len(gone) // 2), flush=True)


srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", listen_port))
srv.listen(16)
threading.Thread(target=cutter, daemon=True).start()
print("listening", flush=True)
while True:
    c, _ = srv.accept()
    try:
        t = socket.create_connection(("127.0.0.1", target_port))
    except OSError:
        c.close()
        continue
    moved = [0]
    with lock:
        live.append((c, t, moved))
    threading.Thread(target=pump, args=(c, t, moved), daemon=True).start()
    threading.Thread(target=pump, args=(t, c, moved), daemon=True).start()
