"""Running the gateway: bind, serve, and shut down cleanly.

Start order: build the application, bind, subscribe to the events channel
and start the heartbeat sweep (:meth:`ws.gateway.Gateway.start`), then accept.

Shutdown order (SIGTERM/SIGINT under ``wsauth gateway``): stop accepting
(close the listening sockets), close every WebSocket with 1001 (going away)
and wait up to :data:`SHUTDOWN_TIMEOUT` seconds for the closing handshakes,
close idle HTTP connections, then stop the subscription and release the
Redis pools.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any

import tornado.httpserver
import tornado.netutil

from shared.config import Settings
from ws.app import GatewayApplication, make_app, server_options

SHUTDOWN_TIMEOUT = 5.0


class GatewayServer:
    """The gateway application behind a Tornado HTTP server; start and stop on one loop."""

    def __init__(
        self, settings: Settings, *, host: str = "127.0.0.1", port: int = 8765, **app_options: Any
    ) -> None:
        self.settings = settings
        self.host = host
        self.port = port
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
        sockets = tornado.netutil.bind_sockets(self.port, address=self.host)
        self.port = int(sockets[0].getsockname()[1])
        try:
            await self.app.gateway.start()
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        self._http = tornado.httpserver.HTTPServer(self.app, **server_options(self.settings))
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
    **app_options: Any,
) -> None:
    """Serve until ``stop`` is set (or SIGINT/SIGTERM when handlers are installed)."""
    stop = stop or asyncio.Event()
    server = GatewayServer(settings, host=host, port=port, **app_options)
    await server.start()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM) if install_signal_handlers else ()
    for number in signals:
        loop.add_signal_handler(number, stop.set)
    try:
        print(f"gateway listening on {server.ws_url}", flush=True)
        await stop.wait()
    finally:
        for number in signals:
            loop.remove_signal_handler(number)
        await server.stop()


def run(settings: Settings, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve in the foreground until SIGINT or SIGTERM, then shut down cleanly."""
    asyncio.run(serve(settings, host=host, port=port, install_signal_handlers=True))


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host
