"""A gateway killed mid-stream: the client resumes on the next node with its ticket and
recovers the channel from history — real ``wsauth gateway`` processes, a real
``wsauth issuer`` process, real Redis.

Gateway A runs as a child process on a port; the client (``ReconnectingClient``) is
subscribed to a history channel while 10,000 messages are published at a steady
rate; A is killed with SIGKILL; gateway B, another process, takes A's address (as a
load balancer would route the reconnects) and the client comes back to it.

The client gets its tokens as a backend does: ``POST /api/tokens`` with
``{"sub", "scope"}`` to the issuer process, by an API client with the ``mint``
permission. What the issuer saw is what the issuer counts: its own ``/metrics``
(``wsauth_issuer_http_requests_total`` of the token endpoints, every status),
read once just before the kill — exactly one request, the first connection's —
and once at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.realtime.conftest import _healthy, gateway_env
from tests.support.issuer_process import IssuerProcess, issuer_process, mint_fetcher
from tests.support.polling import wait_until
from wsauth.shared.core.config import Settings
from wsauth.shared.core.errors import Unavailable
from wsauth.shared.state.events import publish_message
from wsauth.shared.state.history import History
from wsauth.shared.state.redis_server import EmbeddedRedis, free_port
from wsauth.ws.backoff import Backoff
from wsauth.ws.client import ReconnectingClient, TokenFetcher

CHANNEL = "chat:stream"
TOTAL = 10_000
RATE = 2_000  # messages per second: five seconds of stream
HISTORY_ENV = {
    "WSAUTH_HISTORY_CHANNELS": "chat:*",
    "WSAUTH_HISTORY_SIZE": "20000",
    "WSAUTH_RESUME_TTL": "120",
}


@contextlib.contextmanager
def gateway_on(settings: Settings, port: int) -> Iterator[subprocess.Popen[str]]:
    """``wsauth gateway --port PORT`` as a child process; killed by PID on exit."""
    wsauth = Path(sys.executable).with_name("wsauth")
    process = subprocess.Popen(
        [str(wsauth), "gateway", "--port", str(port)],
        env=gateway_env(settings, **HISTORY_ENV),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # A process start on a loaded machine can take a while: a generous bound.
        wait_until(
            lambda: _healthy(f"http://127.0.0.1:{port}"), timeout=30.0, what="the gateway process"
        )
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


@pytest.fixture
def issuer(settings: Settings, minter: tuple[str, str], tmp_path: Path) -> Iterator[IssuerProcess]:
    """``wsauth issuer`` as a child process on the test's Redis and key store, starting
    (the test waits for it once gateway A is up: both start side by side)."""
    with issuer_process(settings, tmp_path / "issuer.log", wait=False) as process:
        yield process


def fetcher(issuer: IssuerProcess, minter: tuple[str, str]) -> TokenFetcher:
    """Tokens for ``svc`` (may read ``chat:*``) from the issuer process, over HTTP."""
    return mint_fetcher(issuer.ready(), minter, sub="svc", scope="sub:chat:*")


def publisher(settings: Settings, stop: threading.Event, count: int, start: int = 0) -> None:
    """Publish ``count`` messages (start, start+1, ...) at RATE per second, through history."""
    client = redis.Redis.from_url(str(settings.redis_url), socket_timeout=1)
    history = History(prefix="wsauth:", size=20_000, ttl=600, channels=("chat:*",))
    began = time.monotonic()
    n = 0
    try:
        while n < count and not stop.is_set():
            try:
                publish_message(client, "wsauth:", CHANNEL, start + n, history=history)
            except Unavailable:
                time.sleep(0.05)  # Redis restarting: the message is sent again
                continue
            n += 1
            ahead = began + n / RATE - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    finally:
        client.close()


async def _recovered(client: ReconnectingClient, count: int) -> None:
    """Wait until ``count`` subscribe replies with ``recovered`` came (re-subscribes)."""
    deadline = time.monotonic() + 10
    while len(client.recoveries) < count:
        if time.monotonic() > deadline:
            raise AssertionError("the re-subscribe was not answered")
        await asyncio.sleep(0.01)


def test_a_killed_gateway_loses_nothing_doubles_nothing_and_costs_no_token(
    settings: Settings, issuer: IssuerProcess, minter: tuple[str, str], raw_redis: redis.Redis
) -> None:
    port = free_port()
    before_kill: list[int] = []
    stop = threading.Event()
    stream = threading.Thread(target=publisher, args=(settings, stop, TOTAL))
    data: list[int] = []
    first = gateway_on(settings, port)
    first.__enter__()
    fetch = fetcher(issuer, minter)  # the issuer started meanwhile
    second: Any = None

    async def scenario() -> ReconnectingClient:
        nonlocal second
        client = ReconnectingClient(
            fetch,
            url=f"ws://127.0.0.1:{port}/ws",
            backoff=Backoff(base=0.05, cap=0.2),
        )
        async with client:
            async for message in client:
                document = json.loads(message)
                if document["type"] == "welcome" and client.connections == 1:
                    await client.subscribe(CHANNEL)  # and again, with since, on reconnects
                    stream.start()
                elif document["type"] == "message":
                    data.append(document["data"])
                    if len(data) == 3_000 and second is None:
                        before_kill.append(await asyncio.to_thread(issuer.token_requests))
                        # SIGKILL: no close frame, no goodbye; B takes the address.
                        await asyncio.to_thread(first.__exit__, None, None, None)
                        second = gateway_on(settings, port)
                        await asyncio.to_thread(second.__enter__)
                    if len(data) == TOTAL:
                        # The re-subscribe's reply may come after the last message it
                        # recovered (a slow start of B: the stream was over by then).
                        await _recovered(client, 1)
                        return client
        raise AssertionError("the client stopped")

    try:
        client = asyncio.run(asyncio.wait_for(scenario(), 90))
    finally:
        stop.set()
        if stream.is_alive():
            stream.join()
        if second is not None:
            second.__exit__(None, None, None)
        first.__exit__(None, None, None)
    assert data == list(range(TOTAL))  # all of them, in order, none twice
    # The issuer's own count: the first connection's request, and none after the kill.
    assert (before_kill, issuer.token_requests(), issuer.tokens_issued()) == ([1], 1, 1)
    assert client.token_fetches == 1
    assert client.resumes >= 1
    assert [r["recovered"] for r in client.recoveries][-1] is True


def test_with_redis_restarted_empty_the_client_is_told_the_history_is_gone(
    settings: Settings, issuer: IssuerProcess, minter: tuple[str, str], redis_server: EmbeddedRedis
) -> None:
    port = free_port()
    before_kill: list[int] = []
    replies: list[dict[str, Any]] = []
    welcomes: list[dict[str, Any]] = []
    data: list[int] = []
    first = gateway_on(settings, port)
    first.__enter__()
    fetch = fetcher(issuer, minter)  # the issuer started meanwhile
    second: Any = None

    async def scenario() -> None:
        nonlocal second
        client = ReconnectingClient(
            fetch,
            url=f"ws://127.0.0.1:{port}/ws",
            backoff=Backoff(base=0.05, cap=0.2),
        )
        async with client:
            async for message in client:
                document = json.loads(message)
                if document["type"] == "welcome":
                    welcomes.append(document)
                    if len(welcomes) == 1:
                        await client.subscribe(CHANNEL)
                        await asyncio.to_thread(publisher, settings, threading.Event(), 100)
                    else:
                        await _recovered(client, 1)
                        replies.extend(client.recoveries)
                        await asyncio.to_thread(publisher, settings, threading.Event(), 5, 100)
                elif document["type"] == "message":
                    data.append(document["data"])
                    if len(data) == 100:
                        before_kill.append(await asyncio.to_thread(issuer.token_requests))
                        await asyncio.to_thread(first.__exit__, None, None, None)
                        await asyncio.to_thread(redis_server.restart)  # empty
                        second = gateway_on(settings, port)
                        await asyncio.to_thread(second.__enter__)
                    if len(data) == 105:
                        return
        raise AssertionError("the client stopped")

    try:
        asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        if second is not None:
            second.__exit__(None, None, None)
        first.__exit__(None, None, None)
    assert data == list(range(105))
    assert (replies[-1]["recovered"], replies[-1]["reason"]) == (False, "epoch_changed")
    # The ticket died with Redis: one fresh token, asked of the issuer and counted there.
    assert (before_kill, issuer.token_requests(), issuer.tokens_issued()) == ([1], 2, 2)
