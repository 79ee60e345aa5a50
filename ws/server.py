"""Running the gateway: bind, serve, and shut down cleanly.

Start order: build the application, bind, subscribe to the events channel
and start the heartbeat sweep (:meth:`wsauth.ws.gateway.Gateway.start`), then accept.

Shutdown order (SIGTERM/SIGINT under ``wsauth gateway``): stop accepting
(close the listening sockets), close every WebSocket with 1001 (going away)
and wait up to :data:`SHUTDOWN_TIMEOUT` seconds for the closing handshakes,
close idle HTTP connections, then stop the subscription and release the
Redis pools.

Several processes (``wsauth gateway --processes N``, :func:`run_processes`):
the parent binds the listening sockets, then forks N workers that all accept
on them (the kernel hands each new connection to one worker). A worker is a
whole gateway node — its own event loop, keys, Redis pools, subscription and
connections — so it authenticates and delivers independently; the parent
holds no connection and no Redis client, it only supervises: SIGTERM or
SIGINT to it is passed on to every worker (each shuts down as above, 1001),
and it exits when they have; a worker that dies is replaced. Each response of
a worker carries ``X-WSAuth-Worker: <index>`` (0 to N-1).

Slow and oversized request heads (:class:`GatewayHTTPServer`): a client has
``WSAUTH_HEADER_TIMEOUT`` seconds from the moment the server waits for a
request (a new connection, or the next request on a kept-alive one) to send
the whole head; then the connection is closed and one line logged
(``reason=header_timeout``). Tornado has one timer for this and for idle
kept-alive connections (``WSAUTH_IDLE_TIMEOUT``), so the shorter of the two
applies. The timeout is the client's: a head that is late because this process
is (its loop saturated by a reconnect storm: the bytes wait in the socket, or
the head is read and its request not started yet) gets another period instead
of a close (:func:`_server_is_late`). A head over :data:`wsauth.ws.app.MAX_HEADER_SIZE` gets ``431``
(``{"error": "headers_too_large"}``) and one line; Tornado alone closes the
socket without a word (its ``IOStream`` closes as soon as a ``read_until``
outgrows ``max_bytes``), so the stream of each connection is one that answers
first (:class:`_HeadStream`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import sys
import time
from typing import Any

import tornado.httpserver
import tornado.httputil
import tornado.ioloop
import tornado.iostream
import tornado.netutil
import tornado.web

from wsauth.shared.core.config import Settings
from wsauth.shared.logs import event_fields
from wsauth.ws.app import MAX_HEADER_SIZE, GatewayApplication, make_app, server_options

SHUTDOWN_TIMEOUT = 5.0
# A worker that exits with an error within this many seconds of its start is
# failing to start (bad configuration): the parent stops instead of forking it
# forever. A worker killed by a signal is always replaced.
STARTUP_GRACE = 3.0
WORKER_HEADER = "X-WSAuth-Worker"
# Tornado's default listen backlog is 128: in a reconnect storm the kernel then
# drops SYNs and clients wait for their retransmit (bench/results/abuse.md saw
# ~5,600 listen overflows for 2,000 clients). The kernel caps it at somaxconn.
LISTEN_BACKLOG = 2048

log = logging.getLogger("wsauth.gateway")


_TOO_LARGE_BODY = b'{"error":"headers_too_large"}'
TOO_LARGE_ANSWER = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"Content-Type: application/json\r\nCache-Control: no-store\r\nConnection: close\r\n"
    b"Content-Length: " + str(len(_TOO_LARGE_BODY)).encode() + b"\r\n\r\n" + _TOO_LARGE_BODY
)


class _HeadStream(tornado.iostream.IOStream):
    """An IOStream that answers 431 before it closes for a request head over the cap."""

    # Set while the server waits for a request head (cleared once it is parsed).
    reading_head = False
    peer = "?"

    def close(self, exc_info: Any = False) -> None:
        if (
            self.reading_head
            and isinstance(exc_info, tornado.iostream.UnsatisfiableReadError)
            and not self.closed()
        ):
            self.reading_head = False
            with contextlib.suppress(OSError):
                self.socket.send(TOO_LARGE_ANSWER)  # small: fits the empty send buffer
            log.warning(
                "request head over %d bytes from %s: 431 reason=headers_too_large",
                MAX_HEADER_SIZE,
                self.peer,
                extra=event_fields("request", reason="headers_too_large", status=431, ip=self.peer),
            )
        super().close(exc_info)


# Streams waiting for a request head -> their deadline (loop time). Every deadline is
# "now + header_timeout", so insertion order is deadline order: the sweep stops at the
# first one still in time.
_Heads = dict["_HeadStream", float]


class _HeadWatch(tornado.httputil.HTTPMessageDelegate):
    """Passes one request through; tells the server when its head has arrived."""

    __slots__ = ("_heads", "_inner", "_stream")

    def __init__(
        self, inner: tornado.httputil.HTTPMessageDelegate, stream: _HeadStream, heads: _Heads
    ) -> None:
        self._inner = inner
        self._stream = stream
        self._heads = heads

    def headers_received(
        self,
        start_line: tornado.httputil.RequestStartLine | tornado.httputil.ResponseStartLine,
        headers: tornado.httputil.HTTPHeaders,
    ) -> Any:
        self._stream.reading_head = False
        self._heads.pop(self._stream, None)
        return self._inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Any:
        return self._inner.data_received(chunk)

    def finish(self) -> None:
        self._inner.finish()

    def on_connection_close(self) -> None:
        self._heads.pop(self._stream, None)
        self._inner.on_connection_close()


class GatewayHTTPServer(tornado.httpserver.HTTPServer):
    """Tornado's HTTP server with a header timeout and a 431 answer (see the module doc).

    The deadlines are kept in one dict and checked by one periodic sweep (a
    dict insert and delete per request, instead of a loop timer each: about
    3.5 µs less CPU per request, bench/results/admission.md); a slow head is
    closed up to one sweep period (at most 0.25 s) after its deadline.
    """

    # Seconds for a whole request head; GatewayServer sets WSAUTH_HEADER_TIMEOUT.
    header_timeout: float = 5.0
    _heads: _Heads | None = None
    _sweeper: tornado.ioloop.PeriodicCallback | None = None

    def handle_stream(self, stream: tornado.iostream.IOStream, address: tuple[Any, ...]) -> None:
        if type(stream) is tornado.iostream.IOStream:  # plain TCP (the gateway has no TLS)
            head_stream = _HeadStream(
                stream.socket,
                max_buffer_size=stream.max_buffer_size,
                read_chunk_size=stream.read_chunk_size,
            )
            head_stream.peer = str(address[0]) if address else "?"
            stream = head_stream
        super().handle_stream(stream, address)

    def start_request(
        self, server_conn: object, request_conn: tornado.httputil.HTTPConnection
    ) -> tornado.httputil.HTTPMessageDelegate:
        delegate = super().start_request(server_conn, request_conn)
        stream = getattr(request_conn, "stream", None)
        if not isinstance(stream, _HeadStream):
            return delegate
        heads = self._heads
        if heads is None:  # first request: on the loop now, start the sweep
            heads = self._heads = {}
            period = max(0.05, min(0.25, self.header_timeout / 10))
            self._sweeper = tornado.ioloop.PeriodicCallback(self._sweep, 1000 * period)
            self._sweeper.start()
        stream.reading_head = True
        heads.pop(stream, None)  # a kept-alive connection goes to the end again
        heads[stream] = tornado.ioloop.IOLoop.current().time() + self.header_timeout
        return _HeadWatch(delegate, stream, heads)

    def _sweep(self) -> None:
        heads = self._heads
        if not heads:
            return
        now = tornado.ioloop.IOLoop.current().time()
        expired = []
        for stream, deadline in heads.items():
            if deadline > now:
                break
            expired.append(stream)
        for stream in expired:
            del heads[stream]
            if _server_is_late(stream):
                heads[stream] = now + self.header_timeout  # still in deadline order
                continue
            _head_timed_out(stream, self.header_timeout)

    def stop(self) -> None:
        super().stop()
        if self._sweeper is not None:
            self._sweeper.stop()
            self._sweeper = None


def _server_is_late(stream: _HeadStream) -> bool:
    """Is the head late because this process is (its loop saturated by a storm), not the
    client? Yes when the whole head is read but not parsed yet (Tornado's read is done,
    the request not started), or when bytes wait in the socket that the loop has not
    read: closing then would only make the client come back, and a ticket or token that
    the queued request carries could be spent on a closed connection."""
    if stream.closed() or not stream.reading_head:
        return False
    if not stream.reading():
        return True  # the head is in: its request starts on the next loop turn
    try:
        return bool(stream.socket.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except (BlockingIOError, InterruptedError):
        return False  # nothing waits: the client is slow
    except OSError:
        return False


def _head_timed_out(stream: _HeadStream, timeout: float) -> None:
    if stream.closed() or not stream.reading_head:
        return
    stream.reading_head = False
    log.info(
        "request head from %s not complete within %.1f s: closed reason=header_timeout",
        stream.peer,
        timeout,
        extra=event_fields("request", reason="header_timeout", ip=stream.peer),
    )
    stream.close()


class GatewayServer:
    """The gateway application behind a Tornado HTTP server; start and stop on one loop."""

    def __init__(
        self,
        settings: Settings,
        *,
        host: str = "127.0.0.1",
        port: int = 8765,
        sockets: list[socket.socket] | None = None,
        worker: int | None = None,
        **app_options: Any,
    ) -> None:
        self.settings = settings
        self.host = host
        self.port = port
        self._sockets = sockets
        self._worker = worker
        self._app_options = app_options
        self.app: GatewayApplication | None = None
        self._http: tornado.httpserver.HTTPServer | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://{_host_for_url(self.host)}:{self.port}/ws"

    @property
    def http_url(self) -> str:
        return f"http://{_host_for_url(self.host)}:{self.port}"

    async def start(self) -> None:
        """Build the application and listen; ``port=0`` picks a free port (see ``.port``).

        Raises:
            OSError: the address cannot be bound.
            ConfigError: the settings do not make a gateway.
        """
        self.app = make_app(self.settings, **self._app_options)
        if self._worker is not None:
            self.app.add_transform(_worker_header(self._worker))
        sockets = self._sockets or tornado.netutil.bind_sockets(
            self.port, address=self.host, backlog=LISTEN_BACKLOG
        )
        self.port = int(sockets[0].getsockname()[1])
        try:
            await self.app.gateway.start()
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        self._http = GatewayHTTPServer(self.app, **server_options(self.settings))
        self._http.header_timeout = self.settings.header_timeout
        self._http.add_sockets(sockets)

    async def stop(self, *, timeout: float = SHUTDOWN_TIMEOUT) -> None:
        """Stop listening, close WebSockets with 1001, close connections and Redis."""
        if self._http is not None:
            self._http.stop()
        if self.app is not None:
            await self.app.gateway.close_connections(timeout=timeout)
        if self._http is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._http.close_all_connections(), timeout)
            self._http = None
        if self.app is not None:
            await self.app.gateway.close()
            self.app = None


async def serve(
    settings: Settings,
    *,
    host: str,
    port: int,
    stop: asyncio.Event | None = None,
    install_signal_handlers: bool = False,
    announce: bool = True,
    **server_options: Any,
) -> None:
    """Serve until ``stop`` is set (or SIGINT/SIGTERM when handlers are installed)."""
    stop = stop or asyncio.Event()
    server = GatewayServer(settings, host=host, port=port, **server_options)
    await server.start()
    freeze_startup_heap()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM) if install_signal_handlers else ()
    for number in signals:
        loop.add_signal_handler(number, stop.set)
    try:
        if announce:
            print(f"gateway listening on {server.ws_url}", flush=True)
        if announce or server_options.get("worker") == 0:
            for warning in await startup_warnings(server):
                print(f"warning: {warning}", file=sys.stderr, flush=True)
        await stop.wait()
    finally:
        for number in signals:
            loop.remove_signal_handler(number)
        await server.stop()


async def startup_warnings(server: GatewayServer, *, wait: float = 2.0) -> list[str]:
    """One line for each thing the gateway needs but lacks at start (docs/howto/deploy.md).

    The gateway keeps running: keys are picked up without a restart, and until
    then every handshake is refused (401 ``unknown_kid``) and ``/readyz`` says
    ``keyset: false``. A JWKS URL gets ``wait`` seconds for its first fetch.
    """
    assert server.app is not None
    keys = server.app.gateway.keys
    deadline = time.monotonic() + wait
    status = keys.status()
    while not status["keys"] and server.settings.jwks_url and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        status = keys.status()
    if status["keys"]:
        return []
    where = status.get("url") or str(server.settings.keys_dir / "jwks.json")
    why = f" ({status['last_error']})" if status.get("last_error") else ""
    return [
        f"no usable verification key from {where}{why}: every handshake is refused "
        "(401 unknown_kid) until keys appear there"
    ]


def freeze_startup_heap() -> None:
    """Take what the process holds after start-up out of the cyclic garbage collector.

    Modules, the application, keys and Redis pools live as long as the process;
    without this every full collection walks them all again (tens of
    milliseconds each, about 25 µs per handshake under load, see
    docs/performance.md). Objects allocated later are collected as usual; a
    start-up object that later becomes part of a garbage cycle (a replaced
    keyset, say) is not freed, a bounded one-time cost.
    """
    gc.collect()
    gc.freeze()


def run(settings: Settings, host: str = "127.0.0.1", port: int = 8765, processes: int = 1) -> None:
    """Serve in the foreground until SIGINT or SIGTERM, then shut down cleanly.

    ``processes``: 1 serves in this process; N > 1 forks N workers sharing the
    port (:func:`run_processes`); 0 means one per CPU.

    Raises:
        OSError: the address cannot be bound.
    """
    count = processes or (os.cpu_count() or 1)
    if count == 1:
        asyncio.run(serve(settings, host=host, port=port, install_signal_handlers=True))
    else:
        sys.exit(run_processes(settings, host=host, port=port, processes=count))


def run_processes(settings: Settings, *, host: str, port: int, processes: int) -> int:
    """Bind, fork ``processes`` workers, supervise them; return the exit status.

    Call it from a process with no event loop, thread or Redis client yet: the
    workers are forks of it.

    Raises:
        OSError: the address cannot be bound.
    """
    sockets = tornado.netutil.bind_sockets(port, address=host, backlog=LISTEN_BACKLOG)
    bound = int(sockets[0].getsockname()[1])
    supervisor = _Supervisor(settings, host=host, sockets=sockets, processes=processes)
    print(
        f"gateway listening on ws://{_host_for_url(host)}:{bound}/ws ({processes} processes)",
        flush=True,
    )
    return supervisor.run()


class _Supervisor:
    """The parent of the worker processes: fork, replace the dead, pass on SIGTERM/SIGINT."""

    def __init__(
        self, settings: Settings, *, host: str, sockets: list[socket.socket], processes: int
    ) -> None:
        self.settings = settings
        self.host = host
        self.sockets = sockets
        self.processes = processes
        self.workers: dict[int, tuple[int, float]] = {}  # pid -> (index, started)
        self.stopping: float | None = None
        self.status = 0

    def run(self) -> int:
        previous = {
            number: signal.signal(number, self._on_signal)
            for number in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            for index in range(self.processes):
                self._fork(index)
            while self.workers:
                self._reap()
                if self.stopping is not None and time.monotonic() > self.stopping:
                    self._kill_all(signal.SIGKILL)
                time.sleep(0.05)
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
            for sock in self.sockets:
                sock.close()
        return self.status

    def _fork(self, index: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker: never returns into the parent's code
            code = 1
            try:
                for number in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(number, signal.SIG_DFL)
                asyncio.run(
                    serve(
                        self.settings,
                        host=self.host,
                        port=0,
                        sockets=self.sockets,
                        worker=index,
                        install_signal_handlers=True,
                        announce=False,
                    )
                )
                code = 0
            except BaseException:
                log.exception("gateway worker %d failed", index)
            finally:
                logging.shutdown()
                with contextlib.suppress(Exception):
                    sys.stdout.flush()
                    sys.stderr.flush()
                os._exit(code)
        self.workers[pid] = (index, time.monotonic())
        log.info("gateway worker %d started (pid %d)", index, pid)
        if self.stopping is not None:  # a signal came while forking
            os.kill(pid, signal.SIGTERM)

    def _reap(self) -> None:
        while self.workers:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.workers.clear()
                return
            if pid == 0:
                return
            if pid not in self.workers:
                continue
            index, started = self.workers.pop(pid)
            code = os.waitstatus_to_exitcode(wait_status)
            if self.stopping is not None:
                continue
            if code > 0 and time.monotonic() - started < STARTUP_GRACE:
                log.error("gateway worker %d exited at start (status %d): stopping", index, code)
                self.status = 1
                self._stop()
                continue
            log.warning(
                "gateway worker %d (pid %d) exited (status %d): replacing it", index, pid, code
            )
            self._fork(index)

    def _on_signal(self, number: int, frame: object) -> None:
        self._stop()

    def _stop(self) -> None:
        if self.stopping is None:
            # Every worker closes its connections (SHUTDOWN_TIMEOUT), then its pools.
            self.stopping = time.monotonic() + SHUTDOWN_TIMEOUT + 10.0
        self._kill_all(signal.SIGTERM)

    def _kill_all(self, number: signal.Signals) -> None:
        for pid in list(self.workers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, number)


def _worker_header(index: int) -> type[tornado.web.OutputTransform]:
    class WorkerHeader(tornado.web.OutputTransform):
        """Names the worker process on every response (and every 101 upgrade)."""

        def transform_first_chunk(
            self,
            status_code: int,
            headers: tornado.httputil.HTTPHeaders,
            chunk: bytes,
            finishing: bool,
        ) -> tuple[int, tornado.httputil.HTTPHeaders, bytes]:
            headers[WORKER_HEADER] = str(index)
            return status_code, headers, chunk

    return WorkerHeader


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host
