"""The HTTP server of ``wsauth issuer``: werkzeug's threaded server, with a header timeout.

werkzeug's development server (through :mod:`http.server`) waits for a
request head forever and takes up to 100 header lines of 64 KiB each. The
request handler here bounds both, the same way the gateway does:

- **Header timeout** (``WSAUTH_HEADER_TIMEOUT``): from the moment the server
  waits for a request (a new connection, or the next request on a kept-alive
  one) the client has that many seconds to send the whole head; then the
  socket is shut down, the request (complete or not) is never handled, and one
  line is logged (``reason=header_timeout``).
- **Header cap** (:data:`MAX_HEAD_BYTES` for the request line and headers):
  over it the answer is ``431`` ``{"error": "headers_too_large"}``.

Refusals of this layer (a bad request line, a head over the cap) are answered
as JSON ``{"error": code}``, with one log line that never quotes the request.

In production the issuer runs under gunicorn (or another WSGI server) behind a
reverse proxy, which bound slow clients themselves (docs/howto/deploy.md).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import socket
import threading
from typing import Any

from flask import Flask
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from wsauth.shared.logs import event_fields

__all__ = ["MAX_HEAD_BYTES", "GuardedRequestHandler", "make_issuer_server"]

log = logging.getLogger("wsauth.issuer.access")

MAX_HEAD_BYTES = 32 * 1024


class _CappedReader(io.RawIOBase):
    """Reads at most ``budget`` more bytes through ``readline``; then says the line is too long."""

    def __init__(self, inner: Any, budget: int) -> None:
        self.inner = inner
        self.budget = budget

    def readline(self, size: int | None = -1) -> bytes:
        limit = self.budget + 1 if size is None or size < 0 else min(size, self.budget + 1)
        line: bytes = self.inner.readline(limit)
        self.budget -= len(line)
        if self.budget < 0:
            # http.client.parse_headers turns a line over its limit into a 431.
            return line + b"x" * 65537
        return line


class GuardedRequestHandler(WSGIRequestHandler):
    """werkzeug's handler with a header timeout and cap; JSON for its own refusals."""

    header_timeout: float = 5.0
    max_head_bytes: int = MAX_HEAD_BYTES

    _timer: threading.Timer | None = None
    _head_done = False
    _timed_out = False

    def handle_one_request(self) -> None:
        self._head_lock = threading.Lock()
        self._head_done = self._timed_out = False
        timer = threading.Timer(self.header_timeout, self._head_timed_out)
        timer.daemon = True
        self._timer = timer
        timer.start()
        try:
            super().handle_one_request()
        finally:
            timer.cancel()

    def parse_request(self) -> bool:
        reader = self.rfile
        budget = self.max_head_bytes - len(self.raw_requestline)
        self.rfile = _CappedReader(reader, max(0, budget))  # type: ignore[assignment]
        try:
            parsed = super().parse_request()
        finally:
            self.rfile = reader
            with self._head_lock:
                self._head_done = True
            if self._timer is not None:
                self._timer.cancel()
        if self._timed_out:  # the head was cut short: never handle what arrived
            self.close_connection = True
            return False
        return parsed

    def _head_timed_out(self) -> None:
        with self._head_lock:
            if self._head_done:
                return
            self._timed_out = True
        log.info(
            "request head from %s not complete within %.1f s: closed reason=header_timeout",
            self.client_address[0],
            self.header_timeout,
            extra=event_fields("request", reason="header_timeout", ip=self.client_address[0]),
        )
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """An answer of the HTTP layer itself, as JSON, logged without the request line."""
        if self._timed_out:
            return
        reason = "headers_too_large" if code == 431 else "bad_request"
        log.info(
            "request from %s refused by the HTTP layer: status=%d reason=%s",
            self.client_address[0],
            code,
            reason,
            extra=event_fields("request", reason=reason, status=code, ip=self.client_address[0]),
        )
        body = json.dumps({"error": reason}).encode()
        self.close_connection = True
        # A request line that did not parse leaves "HTTP/0.9", which would send no head.
        self.request_version = "HTTP/1.0"
        with contextlib.suppress(OSError):
            self.send_response_only(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # werkzeug's request line holds the whole URI, query string included; the app
        # writes its own access line (wsauth.issuer.access).
        return


def make_issuer_server(
    host: str, port: int, app: Flask, *, header_timeout: float, fd: int | None = None
) -> BaseWSGIServer:
    """werkzeug's threaded server for ``app`` with :class:`GuardedRequestHandler`;
    ``fd``: a socket already bound and listening (werkzeug serves a duplicate of it).

    Raises:
        OSError: the address cannot be bound.
    """
    handler = type(
        "IssuerRequestHandler", (GuardedRequestHandler,), {"header_timeout": header_timeout}
    )
    return make_server(host, port, app, threaded=True, request_handler=handler, fd=fd)
