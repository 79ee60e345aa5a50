"""A real gateway on a loopback port, in a background thread with its own event loop."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from wsauth.shared.core.config import Settings
from wsauth.ws.app import GatewayApplication
from wsauth.ws.server import GatewayServer


@dataclass
class GatewayHandle:
    port: int
    app: GatewayApplication
    loop: asyncio.AbstractEventLoop

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def call(self, function: Any, *args: Any) -> Any:
        """Run ``function(*args)`` (a coroutine function) on the gateway's loop; wait for it."""
        return asyncio.run_coroutine_threadsafe(function(*args), self.loop).result(timeout=10)


@contextlib.contextmanager
def run_gateway(
    settings: Settings, *, port: int = 0, **make_app_kwargs: Any
) -> Iterator[GatewayHandle]:
    """Start a gateway on 127.0.0.1 (``port``, default a free one); stop it and join its thread."""
    started = threading.Event()
    failure: list[BaseException] = []
    state: dict[str, Any] = {}

    async def main() -> None:
        server = GatewayServer(settings, host="127.0.0.1", port=port, **make_app_kwargs)
        stop = asyncio.Event()
        try:
            await server.start()
        except BaseException as error:
            failure.append(error)
            started.set()
            await server.stop()
            return
        assert server.app is not None
        state["handle"] = GatewayHandle(server.port, server.app, asyncio.get_running_loop())
        state["stop"] = stop
        started.set()
        try:
            await stop.wait()
        finally:
            await server.stop()

    thread = threading.Thread(target=asyncio.run, args=(main(),), name="gateway", daemon=True)
    thread.start()
    if not started.wait(timeout=10):
        raise RuntimeError("gateway did not start")
    if failure:
        thread.join(timeout=10)
        raise failure[0]
    handle: GatewayHandle = state["handle"]
    try:
        yield handle
    finally:
        handle.loop.call_soon_threadsafe(state["stop"].set)
        thread.join(timeout=15)
        if thread.is_alive():
            raise RuntimeError("gateway thread did not stop")
