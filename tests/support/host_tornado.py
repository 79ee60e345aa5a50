"""A host's own Tornado application on a loopback port, in a thread with its own loop.

The application is the host's (its own routes, default ``log_function``); the
wsauth part is a :class:`wsauth.tornado.GatewayNode` started and closed around it,
as the how-to (docs/howto/tornado.md) says.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import tornado.httpserver
import tornado.netutil
import tornado.web

from wsauth.shared.core.config import Settings
from wsauth.tornado import GatewayNode


@dataclass
class HostApp:
    port: int
    node: GatewayNode
    app: tornado.web.Application
    loop: asyncio.AbstractEventLoop

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def call(self, function: Any, *args: Any) -> Any:
        """Run ``function(*args)`` (a coroutine function) on the app's loop; wait for it."""
        return asyncio.run_coroutine_threadsafe(function(*args), self.loop).result(timeout=10)


@contextlib.contextmanager
def run_host_app(
    settings: Settings, routes: Callable[[GatewayNode], list[Any]], **app_settings: Any
) -> Iterator[HostApp]:
    """Serve ``tornado.web.Application(routes(node), **app_settings)`` on 127.0.0.1."""
    started = threading.Event()
    failure: list[BaseException] = []
    state: dict[str, Any] = {}

    async def main() -> None:
        try:
            node = GatewayNode.from_settings(settings)
            app = tornado.web.Application(routes(node), **app_settings)
            sockets = tornado.netutil.bind_sockets(0, address="127.0.0.1")
            await node.start()
        except BaseException as error:
            failure.append(error)
            started.set()
            return
        server = tornado.httpserver.HTTPServer(app)
        server.add_sockets(sockets)
        stop = asyncio.Event()
        port = int(sockets[0].getsockname()[1])
        state["host"] = HostApp(port, node, app, asyncio.get_running_loop())
        state["stop"] = stop
        started.set()
        try:
            await stop.wait()
        finally:
            server.stop()
            await node.close()
            await server.close_all_connections()

    thread = threading.Thread(target=asyncio.run, args=(main(),), name="host-app", daemon=True)
    thread.start()
    if not started.wait(timeout=10):
        raise RuntimeError("host app did not start")
    if failure:
        thread.join(timeout=10)
        raise failure[0]
    host: HostApp = state["host"]
    try:
        yield host
    finally:
        host.loop.call_soon_threadsafe(state["stop"].set)
        thread.join(timeout=15)
        if thread.is_alive():
            raise RuntimeError("host app thread did not stop")
