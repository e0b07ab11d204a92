"""A TCP proxy standing for one directed network link between two nodes, that a test can cut
and heal.

A cut behaves as a network partition does under TCP: nothing crosses the link, in either
direction of its connections, but no byte is lost or reordered. Connections stay open; what was
sent waits (in this proxy's and the kernel's buffers, as unacknowledged segments would be
retransmitted) and arrives after the heal, unless an endpoint gave up and closed first. New
connections made during the cut are accepted and then hear nothing until the heal.

    link = LinkProxy(("127.0.0.1", target_port))   # listens on 127.0.0.1:link.port
    link.cut(); ...; link.heal()
    link.close()
"""

from __future__ import annotations

import select
import socket
import threading


class LinkProxy:
    def __init__(self, target: tuple[str, int]):
        self.target = target
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self._open = threading.Event()  # set: the link carries traffic
        self._open.set()
        self._closed = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.connections = 0  # accepted, for the test's report
        threading.Thread(target=self._accept, daemon=True, name=f"link-{self.port}").start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def cut(self) -> None:
        self._open.clear()

    def heal(self) -> None:
        self._open.set()

    def close(self) -> None:
        self._closed = True
        self._open.set()
        self._listener.close()
        with self._lock:
            for s in self._sockets:
                try:
                    s.close()
                except OSError:
                    pass
            self._sockets.clear()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        self._open.wait()  # a cut link: the connection is accepted and then hears nothing
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        with self._lock:
            if self._closed:
                client.close()
                upstream.close()
                return
            self._sockets += [client, upstream]
        pair = {"pumps": 2}
        for src, dst in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(src, dst, pair), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, pair: dict) -> None:
        """Copies src to dst while the link is open; while it is cut, reads nothing, so the
        bytes wait where TCP keeps them. The second pump of a connection to end closes it."""
        try:
            poller = select.poll()
            poller.register(src, select.POLLIN)
            while not self._closed:
                if not self._open.is_set():
                    self._open.wait(0.05)
                    continue
                if not poller.poll(50) or not self._open.is_set():
                    continue
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except (OSError, ValueError):  # closed under us by close(): the link is gone
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            with self._lock:
                pair["pumps"] -= 1
                if pair["pumps"] == 0:
                    for s in (src, dst):
                        s.close()
                        if s in self._sockets:
                            self._sockets.remove(s)
