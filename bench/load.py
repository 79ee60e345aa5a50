"""A lean load client: raw non-blocking sockets and one ``epoll`` loop, no framework.

Each request is a prebuilt byte string (an HTTP/1.1 WebSocket upgrade, or a
token request). The client keeps ``concurrency`` connections in flight
(closed loop): connect, send the request, read until the status line (or the
end of the answer), record the status and the latency from ``connect()``,
close, start the next. It costs a few tens of microseconds of CPU per
request, far less than any server under test, and reports its own CPU time
so that this stays visible.

With ``keep_open=True`` the connections that got a status line are kept
open and returned instead of closed (the idle-connection memory benchmark).
"""

from __future__ import annotations

import errno
import selectors
import socket
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.procs import BenchError

_RECV = 4096


@dataclass
class LoadResult:
    """What one load run saw."""

    statuses: Counter[int] = field(default_factory=Counter)  # 0: connection error
    latencies_ns: list[int] = field(default_factory=list)
    wall_s: float = 0.0
    client_cpu_s: float = 0.0
    kept: list[socket.socket] = field(default_factory=list, repr=False)

    @property
    def count(self) -> int:
        return sum(self.statuses.values())

    def ok(self, status: int) -> int:
        return self.statuses[status]

    def rate(self) -> float:
        return self.count / self.wall_s if self.wall_s > 0 else 0.0

    def percentile_ms(self, fraction: float) -> float:
        if not self.latencies_ns:
            return float("nan")
        ordered = sorted(self.latencies_ns)
        index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
        return ordered[index] / 1e6

    def mean_ms(self) -> float:
        return statistics.fmean(self.latencies_ns) / 1e6 if self.latencies_ns else float("nan")


class _Conn:
    __slots__ = ("buffer", "index", "sent", "sock", "started", "status")

    def __init__(self, sock: socket.socket, index: int, started: int) -> None:
        self.sock = sock
        self.index = index
        self.started = started
        self.sent = False
        self.buffer = b""
        self.status = -1


def run_load(
    address: tuple[str, int],
    requests: Sequence[bytes],
    *,
    concurrency: int,
    read_to_eof: bool = False,
    keep_open: bool = False,
    timeout: float = 120.0,
) -> LoadResult:
    """Send every request once, ``concurrency`` at a time; return what was seen.

    Raises:
        BenchError: the run did not finish within ``timeout`` seconds.
    """
    result = LoadResult()
    selector = selectors.DefaultSelector()
    clock = time.perf_counter_ns
    total = len(requests)
    next_index = 0
    in_flight = 0

    def start_one() -> None:
        nonlocal next_index, in_flight
        index = next_index
        next_index += 1
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Conn(sock, index, clock())
        code = sock.connect_ex(address)
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            result.statuses[0] += 1
            return
        selector.register(sock, selectors.EVENT_WRITE, conn)
        in_flight += 1

    def finish(conn: _Conn, status: int) -> None:
        nonlocal in_flight
        selector.unregister(conn.sock)
        in_flight -= 1
        result.statuses[status] += 1
        if status > 0:
            result.latencies_ns.append(clock() - conn.started)
        if keep_open and status == 101:
            result.kept.append(conn.sock)
        else:
            conn.sock.close()

    cpu_start = time.process_time()
    wall_start = time.perf_counter()
    deadline = time.monotonic() + timeout
    try:
        while next_index < total or in_flight:
            while in_flight < concurrency and next_index < total:
                start_one()
            if time.monotonic() > deadline:
                raise BenchError(f"load run did not finish within {timeout} s")
            for key, events in selector.select(timeout=1.0):
                conn: _Conn = key.data
                try:
                    if not conn.sent:
                        if events & selectors.EVENT_WRITE:
                            conn.sock.sendall(requests[conn.index])
                            conn.sent = True
                            selector.modify(conn.sock, selectors.EVENT_READ, conn)
                        continue
                    chunk = conn.sock.recv(_RECV)
                except OSError:
                    finish(conn, 0)
                    continue
                if conn.status < 0:
                    conn.buffer += chunk
                    end = conn.buffer.find(b"\r\n")
                    if end >= 0:
                        conn.status = _status(conn.buffer[:end])
                        if not read_to_eof:
                            finish(conn, conn.status)
                            continue
                    elif not chunk:
                        finish(conn, 0)
                        continue
                if not chunk:  # the end of a read-to-EOF answer
                    finish(conn, conn.status)
    finally:
        result.wall_s = time.perf_counter() - wall_start
        result.client_cpu_s = time.process_time() - cpu_start
        for key in list(selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        selector.close()
    return result


def _status(line: bytes) -> int:
    parts = line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        return 0
    return int(parts[1])


def close_all(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()
    sockets.clear()


def upgrade_request(host: str, port: int, *, authorization: str | None) -> bytes:
    """An RFC 6455 opening handshake as a non-browser client sends it."""
    lines = [
        "GET /ws HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ]
    if authorization is not None:
        lines.append(f"Authorization: {authorization}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def post_request(host: str, port: int, path: str, *, authorization: str | None) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Length: 0"]
    if authorization is not None:
        lines.append(f"Authorization: {authorization}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
