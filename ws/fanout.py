"""The gateway's one Redis pub/sub subscription: events in, handed to the gateway.

One :class:`Fanout` per gateway process subscribes to ``{prefix}events``
(:mod:`wsauth.shared.state.events`) — never one subscription per connection — and calls
``handle(event)`` for each event; the gateway delivers it to its own
connections (a user with no connection here: nothing happens).

It never gives up and never crashes the IOLoop. When the subscription is
lost (Redis restarted, network cut, no answer to a keep-alive PING within
``keepalive`` seconds) it logs ONE warning for the whole outage, retries with
exponential backoff and full jitter, logs one line when it is back, and then
calls ``resubscribed()`` so that the gateway can re-check its connections
against revocations recorded while it was deaf (pub/sub does not replay
missed events). A malformed event is logged and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio

from wsauth.shared.core.errors import WsAuthError
from wsauth.shared.state import redis_conn
from wsauth.shared.state.events import Event, channel, decode
from wsauth.ws.backoff import Backoff

log = logging.getLogger("wsauth.gateway")

KEEPALIVE = 15.0
RESUBSCRIBE_BACKOFF = Backoff(base=0.2, cap=5.0)
POLL = 1.0


def subscriber_client(url: str, *, connect_timeout: float) -> redis.asyncio.Redis:
    """A client for one long-lived subscription: no read timeout, no hidden retries.

    We reconnect ourselves, so that we know an outage happened and resync.
    """
    return redis_conn.subscriber_client(url, connect_timeout=connect_timeout)


class Fanout:
    """Subscribe to the events channel and hand every event to ``handle``."""

    def __init__(
        self,
        connect: Callable[[], redis.asyncio.Redis],
        *,
        prefix: str,
        confirm_timeout: float = 5.0,
        handle: Callable[[Event], object],
        resubscribed: Callable[[], Awaitable[Any]] | None = None,
        backoff: Backoff = RESUBSCRIBE_BACKOFF,
        keepalive: float = KEEPALIVE,
        on_state: Callable[[bool], object] | None = None,
    ) -> None:
        self._connect = connect
        self.channel = channel(prefix)
        self._handle = handle
        self._resubscribed = resubscribed
        self._backoff = backoff
        self._keepalive = keepalive
        self._confirm_timeout = confirm_timeout
        self._task: asyncio.Task[None] | None = None
        self._first_attempt = asyncio.Event()
        self._on_state = on_state
        self._subscribed = False
        self.outages = 0

    @property
    def subscribed(self) -> bool:
        """True while Redis has confirmed the subscription and it has not failed since."""
        return self._subscribed

    @subscribed.setter
    def subscribed(self, value: bool) -> None:
        changed, self._subscribed = value != self._subscribed, value
        if changed and self._on_state is not None:
            self._on_state(value)  # metrics: wsauth_gateway_pubsub_connected

    @property
    def running(self) -> bool:
        """False once the subscription task has ended, which only a bug can do (liveness)."""
        return self._task is None or not self._task.done()

    async def start(self, *, wait: float = 1.0) -> None:
        """Start the subscription; wait up to ``wait`` s for the first attempt to end.

        Never raises for Redis being down: the subscription keeps retrying.
        """
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="wsauth-fanout")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_attempt.wait(), wait)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.subscribed = False

    async def _run(self) -> None:
        attempt = 0
        lost_at: float | None = None
        while True:
            client = self._connect()
            try:
                await redis_conn.ready(client)  # a Cluster client loads its slot map
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    await self._confirmed(pubsub)
                    self.subscribed = True
                    self._first_attempt.set()
                    if lost_at is None:
                        log.info("events: subscribed to %s", self.channel)
                    else:
                        log.info(
                            "events: subscribed to %s again after %.1fs",
                            self.channel,
                            time.monotonic() - lost_at,
                        )
                    lost_at, attempt = None, 0
                    if self._resubscribed is not None:
                        await self._resync()
                    await self._read(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # any failure: retry, never crash the loop
                self.subscribed = False
                self._first_attempt.set()
                if lost_at is None:
                    lost_at = time.monotonic()
                    self.outages += 1
                    log.warning(
                        "events: subscription to %s lost (%s); retrying in the background",
                        self.channel,
                        type(error).__name__,
                    )
            finally:
                self.subscribed = False
                with contextlib.suppress(Exception):
                    await client.aclose()
            await asyncio.sleep(self._backoff.delay(attempt))
            attempt += 1

    async def _confirmed(self, pubsub: Any) -> None:
        """Wait for Redis to confirm the subscription: from then on PUBLISH counts this node."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._confirm_timeout
        while loop.time() < deadline:
            message = await pubsub.get_message(timeout=max(0.0, deadline - loop.time()))
            if message is not None and message.get("type") == "subscribe":
                return
        raise ConnectionError("SUBSCRIBE not confirmed")

    async def _resync(self) -> None:
        assert self._resubscribed is not None
        try:
            await self._resubscribed()
        except Exception as error:  # the live events still flow; log and go on
            log.warning("events: re-checking revocations failed (%s)", type(error).__name__)

    async def _read(self, pubsub: Any) -> None:
        loop = asyncio.get_running_loop()
        last_heard = loop.time()
        ping_sent: float | None = None
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=POLL)
            now = loop.time()
            if message is not None:
                last_heard, ping_sent = now, None
                if message.get("type") == "message":
                    self._dispatch(message.get("data"))
            elif ping_sent is not None and now - ping_sent >= self._keepalive:
                raise ConnectionError("no answer to PING")
            elif ping_sent is None and now - last_heard >= self._keepalive:
                await pubsub.ping()
                ping_sent = now

    def _dispatch(self, data: Any) -> None:
        try:
            event = decode(data if isinstance(data, bytes | str) else b"")
        except WsAuthError as error:
            log.warning("events: dropped an event on %s (%s)", self.channel, error.code)
            return
        try:
            self._handle(event)
        except Exception:
            log.exception("events: delivering an event failed")
