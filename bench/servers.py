"""The three gateway servers of the handshake benchmark, one per process.

``python -m bench.servers KIND`` listens on a free loopback
port, prints ``READY <port>`` and serves until SIGTERM. Settings come from the
``WSAUTH_*`` environment, as for ``wsauth gateway``; all three log one access
line per request at INFO, as ``wsauth gateway`` does (to stderr, which the
benchmark sends to a file).

``baseline``  an unauthenticated ``tornado.websocket.WebSocketHandler``
``ticket``    the opaque-ticket design: ``Authorization: Bearer <ticket>``,
              ``GET {prefix}ticket:<ticket>`` (redis.asyncio), JSON
              ``{"sub", "exp"}``, time check
``wsauth``    the real gateway: ``wsauth.ws.server.GatewayServer`` (``wsauth.ws.make_app``)

After the upgrade every kind does the same small work as the gateway: one
``welcome`` text message and a registry entry, so that the differences
measured are those of authentication. Every kind freezes its start-up heap
once it listens (``wsauth.ws.server.freeze_startup_heap``), as ``wsauth gateway``
does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
from typing import Any

import redis
import redis.asyncio
import tornado.httpserver
import tornado.netutil
import tornado.web
import tornado.websocket

from bench.procs import raise_fd_limit
from wsauth.shared.core.config import Settings, load_settings
from wsauth.shared.state.replay import async_client
from wsauth.ws.app import application_settings, server_options
from wsauth.ws.server import GatewayServer, freeze_startup_heap

KINDS = ("baseline", "ticket", "wsauth")
TICKET_PREFIX = "ticket:"
FD_LIMIT = 65536


class _Socket(tornado.websocket.WebSocketHandler):
    """What every kind does after the upgrade: welcome message, registry entry."""

    sub = "anonymous"

    @property
    def registry(self) -> set[Any]:
        return self.application.settings["bench_registry"]  # type: ignore[no-any-return]

    def open(self, *args: Any, **kwargs: Any) -> None:
        self.registry.add(self)
        self.write_message(json.dumps({"type": "welcome", "sub": self.sub}))

    def on_message(self, message: str | bytes) -> None:
        pass

    def on_close(self) -> None:
        self.registry.discard(self)


class BaselineSocket(_Socket):
    """No authentication at all."""


class TicketSocket(_Socket):
    """The opaque-ticket design: the ticket names a Redis record; GET, parse, check time."""

    async def get(self, *args: Any, **kwargs: Any) -> None:
        header = self.request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return self._refuse(401, "token_missing")
        client: redis.asyncio.Redis = self.application.settings["bench_redis"]
        try:
            raw = await client.get(TICKET_PREFIX + header[7:])
        except (redis.RedisError, OSError):
            return self._refuse(503, "redis_unavailable")
        if raw is None:
            return self._refuse(401, "invalid_token")
        try:
            record = json.loads(raw)
            sub, exp = record["sub"], record["exp"]
        except (ValueError, KeyError, TypeError):
            return self._refuse(401, "invalid_token")
        if not isinstance(exp, int) or exp <= time.time():
            return self._refuse(401, "token_expired")
        self.sub = str(sub)
        await super().get(*args, **kwargs)

    def _refuse(self, status: int, code: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": code}))


def _plain_app(settings: Settings, handler: type[_Socket]) -> tornado.web.Application:
    options = application_settings(settings)
    del options["log_function"]  # Tornado's own access log (the gateway's never shows URIs)
    return tornado.web.Application(
        [(r"/ws", handler)],
        bench_registry=set(),
        bench_redis=async_client(settings.effective_redis_url, timeout=settings.redis_timeout),
        **options,
    )


async def serve(kind: str, settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, stop.set)
    if kind == "wsauth":
        gateway = GatewayServer(settings, host="127.0.0.1", port=0)
        await gateway.start()
        port = gateway.port
    else:
        app = _plain_app(settings, BaselineSocket if kind == "baseline" else TicketSocket)
        sockets = tornado.netutil.bind_sockets(0, address="127.0.0.1")
        port = int(sockets[0].getsockname()[1])
        http = tornado.httpserver.HTTPServer(app, **server_options(settings))
        http.add_sockets(sockets)
    # As `wsauth gateway` does (wsauth.ws.server.serve), and for every kind alike.
    freeze_startup_heap()
    print(f"READY {port}", flush=True)
    await stop.wait()
    if kind == "wsauth":
        await gateway.stop(timeout=2.0)
    else:
        http.stop()
        await http.close_all_connections()
        await app.settings["bench_redis"].aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.servers")
    parser.add_argument("kind", choices=KINDS)
    args = parser.parse_args(argv)
    raise_fd_limit(FD_LIMIT)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = load_settings()
    asyncio.run(serve(args.kind, settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
