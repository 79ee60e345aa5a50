"""Serve an issuer app on a loopback port for the length of a ``with`` block."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from flask import Flask
from werkzeug.serving import make_server

from wsauth.issuer import create_app
from wsauth.issuer.state import EXTENSION, get_state
from wsauth.shared.core.config import Settings


@contextlib.contextmanager
def run_issuer(settings_or_app: Settings | Flask, *, port: int = 0) -> Iterator[str]:
    """Yield ``http://127.0.0.1:PORT`` while a threaded werkzeug server serves the app.

    On exit the server is shut down, its thread joined, and the app's Redis
    connections released.
    """
    app = settings_or_app if isinstance(settings_or_app, Flask) else create_app(settings_or_app)
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="test-issuer", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        if EXTENSION in app.extensions:
            get_state(app).close()
