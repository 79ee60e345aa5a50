"""The gateway's Redis pub/sub: the broadcast channel, plus one topic per user and channel held.

A gateway process receives only what it can deliver (DESIGN.md, "Delivery
across nodes"). One :class:`Fanout` per process holds:

- the **broadcast** channel ``{prefix}events`` (:mod:`wsauth.shared.state.events`),
  which every node reads: revocations, which every node must see (and, for
  publishers of earlier versions, pushes);
- one **topic** per user with a live connection here (``{prefix}user:<sub>``)
  and per channel a connection here joined (``{prefix}channel:<name>``): the
  registry (:mod:`wsauth.ws.registry`) calls :meth:`Fanout.hold` for the first
  connection of a user or member of a channel and :meth:`Fanout.release` after
  the last one. A node therefore pays nothing for events of users and channels
  it does not hold.

**Batched.** ``hold`` and ``release`` only record the change; one writer task
applies every change recorded since its last pass in one go — ``SUBSCRIBE t1
t2 ...`` of up to :data:`BATCH` topics per command — and starts a pass only
once Redis has answered the previous one, so what changes during a round trip
is the next batch: a reconnect storm of thousands of connections costs a
handful of commands, not one per connection, and a lone change waits for
nothing. A user who disconnects and reconnects within one pass costs nothing.

**Synced.** After each pass the writer sends ``PING wsauth-sync:<n>`` on every
connection it wrote to; Redis answers in order, so the answer means every
change up to ``n`` is applied. :meth:`Fanout.when_synced` runs a callback
then: the gateway sends its ``welcome`` (and the protocol its ``subscribe``
reply) only once a message published to the user or channel reaches it.
While the subscription is down, callbacks run at once (nothing would arrive
anyway; the client sees what it would have seen before).

**Sharded on Redis Cluster.** Classic pub/sub on a Cluster sends every
message to every node of the Cluster. Where the server has sharded pub/sub
(Redis >= 7, :func:`wsauth.shared.state.redis_conn.sharded_pubsub`), topics use
``SSUBSCRIBE``/``SPUBLISH``: a topic lives on the master of its hash slot
only, and the gateway holds one connection per master it needs (one
``SSUBSCRIBE`` per hash slot, written together: Redis refuses a
``SSUBSCRIBE`` across slots). The broadcast channel stays classic. Redis
6.2 (the embedded server of ``wsauth dev`` and the tests) has no sharded
pub/sub: the gateway falls back to classic topics and says so in
``/readyz`` (``pubsub_mode``) and in its log. When the Cluster moves a slot,
Redis unsubscribes its topics (an unasked ``sunsubscribe``); the gateway
then reconnects as for an outage, with the new slot map.

It never gives up and never crashes the IOLoop. When a subscription is
lost (Redis restarted, network cut, no answer to a keep-alive PING within
``keepalive`` seconds) it logs ONE warning for the whole outage, retries with
exponential backoff and full jitter, subscribes to everything held again,
logs one line when it is back, and then calls ``resubscribed()`` so that the
gateway can re-check its connections against revocations recorded while it
was deaf (pub/sub does not replay missed events). A malformed event, or one
on a topic it does not belong to, is logged and dropped.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio
import redis.asyncio.cluster

from wsauth.shared.core.errors import WsAuthError
from wsauth.shared.state import redis_conn
from wsauth.shared.state.events import Event, Message, Push, channel, decode, topic_of
from wsauth.ws.backoff import Backoff

log = logging.getLogger("wsauth.gateway")

KEEPALIVE = 15.0
RESUBSCRIBE_BACKOFF = Backoff(base=0.2, cap=5.0)
POLL = 1.0
BATCH = 1000
SYNC = "wsauth-sync:"

CLASSIC = "classic"
SHARDED = "sharded"


def subscriber_client(url: str, *, connect_timeout: float) -> redis.asyncio.Redis:
    """A client for one long-lived subscription: no read timeout, no hidden retries.

    We reconnect ourselves, so that we know an outage happened and resync.
    """
    return redis_conn.subscriber_client(url, connect_timeout=connect_timeout)


class SlotMoved(ConnectionError):
    """The Cluster unsubscribed a sharded topic of ours: its slot moved to another master."""


@dataclass
class _Session:
    """What one connected run of the subscription has sent to Redis."""

    broadcast: Any
    sharded: bool
    cluster: Any = None
    # topic -> the pubsub it is subscribed on
    sent: dict[str, Any] = field(default_factory=dict)
    # node name -> its pubsub, and their connection pools (sharded only)
    nodes: dict[str, Any] = field(default_factory=dict)
    pools: list[Any] = field(default_factory=list)
    # topics we unsubscribed and whose confirmation is still due (sharded only)
    leaving: collections.Counter[str] = field(default_factory=collections.Counter)
    # sync number -> how many PING answers are still due, and the passes in order
    pongs: dict[int, int] = field(default_factory=dict)
    passes: collections.deque[int] = field(default_factory=collections.deque)
    last_pass: int = -1


class Fanout:
    """The broadcast channel and the held topics; every event goes to ``handle``."""

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
        self.prefix = prefix
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
        # Sharded or classic topics: decided at each (re)connection.
        self.mode = CLASSIC
        self.mode_reason = "not connected yet"
        self._wanted: set[str] = set()
        self._changed: set[str] = set()
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        self._requested = 0
        self._confirmed = 0
        self._waiters: collections.deque[tuple[int, Callable[[], object]]] = collections.deque()
        self._session: _Session | None = None
        self._was_up = False
        self.commands = 0  # SUBSCRIBE-like commands sent (the batching, for tests and bench)

    @property
    def subscribed(self) -> bool:
        """True while Redis has confirmed the subscriptions and they have not failed since."""
        return self._subscribed

    @subscribed.setter
    def subscribed(self, value: bool) -> None:
        changed, self._subscribed = value != self._subscribed, value
        if changed and self._on_state is not None:
            self._on_state(value)  # metrics: wsauth_gateway_pubsub_connected
        if not value:
            self._release_waiters()

    @property
    def running(self) -> bool:
        """False once the subscription task has ended, which only a bug can do (liveness)."""
        return self._task is None or not self._task.done()

    @property
    def topics(self) -> frozenset[str]:
        """The topics this node holds (whether or not Redis has applied them yet)."""
        return frozenset(self._wanted)

    # --- what the registry tells us --------------------------------------------------

    def hold(self, topic: str) -> None:
        """Subscribe to ``topic`` in the next batch (idempotent)."""
        if topic not in self._wanted:
            self._wanted.add(topic)
            self._change(topic)

    def release(self, topic: str) -> None:
        """Unsubscribe from ``topic`` in the next batch (idempotent)."""
        if topic in self._wanted:
            self._wanted.discard(topic)
            self._change(topic)

    def _change(self, topic: str) -> None:
        self._changed.add(topic)
        self._requested += 1
        self._wake.set()

    def when_synced(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` once Redis has applied every hold and release made so far
        (at once when nothing is pending, or while the subscription is down)."""
        if not self._subscribed or self._requested <= self._confirmed:
            callback()
        else:
            self._waiters.append((self._requested, callback))

    def _confirm(self, upto: int) -> None:
        self._confirmed = max(self._confirmed, upto)
        self._progress.set()
        while self._waiters and self._waiters[0][0] <= self._confirmed:
            self._call(self._waiters.popleft()[1])

    def _release_waiters(self) -> None:
        while self._waiters:
            self._call(self._waiters.popleft()[1])

    @staticmethod
    def _call(callback: Callable[[], object]) -> None:
        try:
            callback()
        except Exception:
            log.exception("events: a callback waiting for the subscriptions failed")

    # --- the subscription task -------------------------------------------------------

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
            self._was_up = False
            try:
                await redis_conn.ready(client)  # a Cluster client loads its slot map
                sharded, self.mode_reason = redis_conn.sharded_pubsub(client)
                self.mode = SHARDED if sharded else CLASSIC
                async with client.pubsub() as broadcast:
                    await broadcast.subscribe(self.channel)
                    self.commands += 1
                    session = _Session(broadcast, sharded, cluster=client if sharded else None)
                    await self._serve(session, lost_at)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # any failure: retry, never crash the loop
                self.subscribed = False
                self._first_attempt.set()
                if self._was_up:
                    lost_at, attempt = None, 0
                if lost_at is None:
                    lost_at = time.monotonic()
                    self.outages += 1
                    log.warning(
                        "events: subscription to %s lost (%s); retrying in the background",
                        self.channel,
                        _name(error),
                    )
            finally:
                self.subscribed = False
                self._session = None
                with contextlib.suppress(Exception):
                    await client.aclose()
            await asyncio.sleep(self._backoff.delay(attempt))
            attempt += 1

    async def _serve(self, session: _Session, lost_at: float | None) -> None:
        """Subscribe to everything held, then read and write until something fails."""
        self._session = session
        # Everything held is a change for this new connection.
        self._changed |= self._wanted
        self._requested += 1
        first = self._requested
        self._wake.set()
        try:
            async with contextlib.AsyncExitStack() as cleanup, asyncio.TaskGroup() as tasks:
                cleanup.push_async_callback(_close_nodes, session)
                tasks.create_task(self._read(session, session.broadcast), name="wsauth-events")
                tasks.create_task(self._write(session, tasks), name="wsauth-subscriber")
                await self._until_confirmed(first)
                self.subscribed = True
                self._was_up = True
                self._first_attempt.set()
                where = f"({len(self._wanted)} topic(s), {self.mode} pub/sub)"
                if lost_at is None:
                    log.info("events: subscribed to %s %s", self.channel, where)
                    if self.mode == CLASSIC and self.mode_reason != "not a Redis Cluster":
                        log.info("events: classic pub/sub for topics: %s", self.mode_reason)
                else:
                    log.info(
                        "events: subscribed to %s again after %.1fs %s",
                        self.channel,
                        time.monotonic() - lost_at,
                        where,
                    )
                if self._resubscribed is not None:
                    await self._resync()
        except BaseExceptionGroup as group:
            # One failed task ends the session; report the first cause, not the group.
            raise _first(group) from None

    async def _until_confirmed(self, upto: int) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._confirm_timeout
        while self._confirmed < upto:
            if loop.time() >= deadline:
                raise ConnectionError("SUBSCRIBE not confirmed")
            await asyncio.sleep(0.005)

    async def _resync(self) -> None:
        assert self._resubscribed is not None
        try:
            await self._resubscribed()
        except Exception as error:  # the live events still flow; log and go on
            log.warning("events: re-checking revocations failed (%s)", type(error).__name__)

    # --- writing: batched SUBSCRIBE / UNSUBSCRIBE ------------------------------------

    async def _write(self, session: _Session, tasks: asyncio.TaskGroup) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(0)  # let the changes of this loop iteration join the batch
            changed, self._changed = self._changed, set()
            upto = self._requested
            if upto == session.last_pass:
                continue  # woken twice for one batch: already written
            session.last_pass = upto
            add = sorted(t for t in changed if t in self._wanted and t not in session.sent)
            drop = sorted(t for t in changed if t not in self._wanted and t in session.sent)
            touched = {id(session.broadcast): session.broadcast}
            if session.sharded:
                await self._write_sharded(session, tasks, add, drop, touched)
            else:
                for chunk in _chunks(add, BATCH):
                    await session.broadcast.subscribe(*chunk)
                    self.commands += 1
                    session.sent.update(dict.fromkeys(chunk, session.broadcast))
                for chunk in _chunks(drop, BATCH):
                    await session.broadcast.unsubscribe(*chunk)
                    self.commands += 1
                    for topic in chunk:
                        del session.sent[topic]
            session.pongs[upto] = len(touched)
            session.passes.append(upto)
            for pubsub in touched.values():
                await pubsub.ping(f"{SYNC}{upto}")
            # One pass in flight at a time: what changes during its round trip is the
            # next batch (a storm batches itself; a lone change waits for nothing).
            while self._confirmed < upto:
                await self._progress.wait()
                self._progress.clear()

    async def _write_sharded(
        self,
        session: _Session,
        tasks: asyncio.TaskGroup,
        add: list[str],
        drop: list[str],
        touched: dict[int, Any],
    ) -> None:
        cluster = session.cluster
        by_slot: dict[int, list[str]] = collections.defaultdict(list)
        for topic in add:
            by_slot[cluster.keyslot(topic)].append(topic)
        for topics in by_slot.values():
            node = cluster.get_node_from_key(topics[0])
            if node is None:
                raise ConnectionError("no master holds the slot of a topic")
            pubsub = session.nodes.get(node.name)
            if pubsub is None:
                pool = redis.asyncio.ConnectionPool(
                    connection_class=node.connection_class, **node.connection_kwargs
                )
                session.pools.append(pool)
                pubsub = redis.asyncio.Redis(connection_pool=pool).pubsub()
                session.nodes[node.name] = pubsub
                await pubsub.ssubscribe(*topics)
                tasks.create_task(self._read(session, pubsub), name=f"wsauth-shard-{node.name}")
            else:
                await pubsub.ssubscribe(*topics)
            self.commands += 1
            session.sent.update(dict.fromkeys(topics, pubsub))
            touched[id(pubsub)] = pubsub
        by_pubsub: dict[int, list[str]] = collections.defaultdict(list)
        for topic in drop:
            by_pubsub[id(session.sent[topic])].append(topic)
        for topics in by_pubsub.values():
            pubsub = session.sent[topics[0]]
            await pubsub.sunsubscribe(*topics)
            self.commands += 1
            for topic in topics:
                session.leaving[topic] += 1
                del session.sent[topic]
            touched[id(pubsub)] = pubsub

    # --- reading ---------------------------------------------------------------------

    async def _read(self, session: _Session, pubsub: Any) -> None:
        loop = asyncio.get_running_loop()
        last_heard = loop.time()
        ping_sent: float | None = None
        while True:
            message = await pubsub.get_message(timeout=POLL)
            now = loop.time()
            if message is not None:
                last_heard, ping_sent = now, None
                kind = message.get("type")
                if kind == "message" or kind == "smessage":
                    self._dispatch(message.get("channel"), message.get("data"))
                elif kind == "pong":
                    self._pong(session, message.get("data"))
                elif kind == "sunsubscribe":
                    self._sunsubscribed(session, message.get("channel"))
            elif ping_sent is not None and now - ping_sent >= self._keepalive:
                raise ConnectionError("no answer to PING")
            elif ping_sent is None and now - last_heard >= self._keepalive:
                await pubsub.ping()
                ping_sent = now

    def _pong(self, session: _Session, data: Any) -> None:
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
        if not text.startswith(SYNC):
            return  # a keep-alive
        try:
            upto = int(text[len(SYNC) :])
        except ValueError:
            return
        due = session.pongs.get(upto)
        if due is None:
            return
        if due > 1:
            session.pongs[upto] = due - 1
            return
        del session.pongs[upto]
        # Confirm in order: a later pass counts only once every earlier one is answered.
        done = None
        while session.passes and session.passes[0] not in session.pongs:
            done = session.passes.popleft()
        if done is not None:
            self._confirm(done)

    def _sunsubscribed(self, session: _Session, raw: Any) -> None:
        topic = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        if session.leaving[topic] > 0:
            session.leaving[topic] -= 1
            if not session.leaving[topic]:
                del session.leaving[topic]
            return
        if topic in session.sent:
            raise SlotMoved(f"Redis unsubscribed {topic!r}")

    def _dispatch(self, raw_channel: Any, data: Any) -> None:
        name = raw_channel.decode("utf-8", "replace") if isinstance(raw_channel, bytes) else ""
        try:
            event = decode(data if isinstance(data, bytes | str) else b"")
        except WsAuthError as error:
            log.warning("events: dropped an event on %s (%s)", name, error.code)
            return
        if name != self.channel and not (
            isinstance(event, Push | Message) and topic_of(self.prefix, event) == name
        ):
            # Only the broadcast channel carries anything; a topic carries its own.
            log.warning("events: dropped an event on %s (wrong_topic)", name)
            return
        try:
            self._handle(event)
        except Exception:
            log.exception("events: delivering an event failed")


async def _close_nodes(session: _Session) -> None:
    for pubsub in session.nodes.values():
        with contextlib.suppress(Exception):
            await pubsub.aclose()
    for pool in session.pools:
        with contextlib.suppress(Exception):
            await pool.disconnect()


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def _name(error: BaseException) -> str:
    return type(error).__name__
