"""A loopback TCP proxy whose upstream the test switches: the load balancer of two gateways.

The page's client keeps one gateway URL (the issuer hands out the proxy's), as
behind a real load balancer; the test decides which node new connections go to
(:meth:`TcpProxy.route_to`) and can cut every connection at once
(:meth:`TcpProxy.sever`, a network blip). Bytes pass through untouched: the
WebSocket handshake, its subprotocols and ``Origin`` are the browser's own.
When either side closes or fails, the proxy closes the other, so a gateway
killed with SIGKILL looks to the browser like a dropped connection (1006).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

CHUNK = 65536


class TcpProxy:
    """Listens on ``127.0.0.1:port``; each connection goes to the upstream of its moment."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self._upstream = upstream
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        #: The upstream each accepted connection was sent to, in order.
        self.routed: list[tuple[str, int]] = []
        self._closed = False
        self._acceptor = threading.Thread(target=self._accept, name="test-proxy", daemon=True)

    def start(self) -> None:
        self._acceptor.start()

    def route_to(self, upstream: tuple[str, int]) -> None:
        """New connections go to ``upstream``; open ones stay where they are."""
        with self._lock:
            self._upstream = upstream

    def sever(self) -> int:
        """Cut every open connection (both sides, no close frame); how many were cut."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            _close(*pair)
        return len(pairs)

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept(); close() alone does not
        self._listener.close()
        self.sever()
        for thread in [self._acceptor, *self._threads]:
            if thread.is_alive():
                thread.join(timeout=5)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # the listener was closed
            with self._lock:
                upstream = self._upstream
                self.routed.append(upstream)
            try:
                server = socket.create_connection(upstream, timeout=5)
            except OSError:
                client.close()  # the node is down: the browser sees a failed handshake
                continue
            server.settimeout(None)
            with self._lock:
                self._pairs.append((client, server))
            for source, target in ((client, server), (server, client)):
                thread = threading.Thread(target=_pump, args=(source, target), daemon=True)
                self._threads.append(thread)
                thread.start()


def _pump(source: socket.socket, target: socket.socket) -> None:
    """Copy ``source`` to ``target`` until one side ends; then close both."""
    try:
        while chunk := source.recv(CHUNK):
            target.sendall(chunk)
    except OSError:
        pass  # reset, or closed by sever(): either way the pair is done
    finally:
        _close(source, target)


def _close(*sockets: socket.socket) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


@contextlib.contextmanager
def tcp_proxy(upstream: tuple[str, int]) -> Iterator[TcpProxy]:
    """A started :class:`TcpProxy` to ``upstream``; closed, its threads joined, on exit."""
    proxy = TcpProxy(upstream)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.close()
