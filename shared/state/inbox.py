"""Client messages to backends: the ``send`` command's Redis Stream, and the backends' reader.

One stream per deployment, ``{prefix}inbox`` (a single key: Redis Cluster
works), capped at about ``WSAUTH_INBOX_MAX_LENGTH`` entries (``XADD ...
MAXLEN ~``: the oldest entries go first, so Redis memory stays bounded; no
TTL is needed). Each entry holds::

    sub         the sender's user, from its verified token
    sid         its issuer session ("" when the token had none)
    connection  the gateway's id of the connection (random, per connection)
    data        the client's JSON value, as compact JSON text
    at          the gateway's clock when it appended, seconds since the epoch

The identity fields come from the gateway, never from the client: a client
cannot send as someone else.

Backends read with a consumer group (:class:`Inbox`): every entry goes to one
consumer of the group, and stays pending until acknowledged; an entry whose
consumer died is taken over by :meth:`Inbox.claim_stale` after
``min_idle`` seconds, so delivery is at-least-once — a backend must tolerate
seeing an entry twice (the entry ``id`` is stable: use it to deduplicate).
Several groups read the same stream independently. ``wsauth inbox ...`` is
the same from the command line.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio

from wsauth.shared.core.errors import BadRequest, Unavailable

INBOX_SUFFIX = "inbox"
# At most this many entries per read; a backend asks again for more.
MAX_READ_COUNT = 1000


def inbox_key(prefix: str) -> str:
    """The stream of client messages: ``{prefix}inbox``."""
    return f"{prefix}{INBOX_SUFFIX}"


@dataclass(frozen=True, slots=True)
class InboxMessage:
    """One message a client sent, with the identity the gateway vouches for."""

    id: str
    sub: str
    sid: str | None
    connection: str
    data: Any
    at: float


def entry_fields(
    *, sub: str, sid: str | None, connection: str, data: Any, at: float
) -> dict[str, str]:
    """The stream entry of one ``send`` (pure).

    Raises:
        BadRequest: ``data`` is not a JSON value.
    """
    try:
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        raise BadRequest("data must be a JSON value") from None
    return {"sub": sub, "sid": sid or "", "connection": connection, "data": text, "at": repr(at)}


def parse_entry(entry_id: str | bytes, fields: dict[Any, Any]) -> InboxMessage:
    """An entry read back from the stream (pure); a damaged field reads as null / empty."""

    def text(name: str) -> str:
        value = fields.get(name, fields.get(name.encode(), b""))
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)

    try:
        data = json.loads(text("data"))
    except ValueError:
        data = None
    try:
        at = float(text("at"))
    except ValueError:
        at = 0.0
    ident = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    return InboxMessage(ident, text("sub"), text("sid") or None, text("connection"), data, at)


async def aappend(
    client: redis.asyncio.Redis,
    prefix: str,
    *,
    sub: str,
    sid: str | None,
    connection: str,
    data: Any,
    max_length: int,
    now: float | None = None,
) -> str:
    """Append one client message (the gateway, ``redis.asyncio``); return the entry id.

    Raises:
        BadRequest: ``data`` is not a JSON value.
        Unavailable: Redis did not answer in time.
    """
    fields = entry_fields(
        sub=sub, sid=sid, connection=connection, data=data, at=time.time() if now is None else now
    )
    try:
        entry_id = await client.xadd(
            inbox_key(prefix),
            fields,  # type: ignore[arg-type]
            maxlen=max_length,
            approximate=True,
        )
    except (redis.RedisError, OSError) as error:
        raise Unavailable(type(error).__name__) from None
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


class Inbox:
    """A backend's reader of the client messages (sync redis-py), in consumer group ``group``.

    ::

        inbox = Inbox(redis_client, "wsauth:", group="chat-bot", consumer="bot-1")
        inbox.ensure_group()
        while True:
            for message in inbox.read(block=5.0):
                handle(message.sub, message.data)
                inbox.ack(message.id)

    Every method raises :class:`~wsauth.shared.core.errors.Unavailable` when
    Redis does not answer in time.
    """

    def __init__(self, client: redis.Redis, prefix: str, *, group: str, consumer: str) -> None:
        self._client = client
        self.key = inbox_key(prefix)
        self.group = group
        self.consumer = consumer

    def ensure_group(self, *, start: str = "$") -> bool:
        """Create the group (reading from ``start``: ``$`` new entries only, ``0`` all that
        are kept) and the stream if missing; False when the group existed already."""
        try:
            self._client.xgroup_create(self.key, self.group, id=start, mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" in str(error):
                return False
            raise Unavailable(type(error).__name__) from None
        except redis.RedisError as error:
            raise Unavailable(type(error).__name__) from None
        return True

    def read(self, *, count: int = 100, block: float | None = None) -> list[InboxMessage]:
        """Entries not yet delivered to this group, at most ``count``; wait up to ``block``
        seconds for the first (None: do not wait). Each stays pending until :meth:`ack`."""
        count = max(1, min(count, MAX_READ_COUNT))
        try:
            answer = self._client.xreadgroup(
                self.group,
                self.consumer,
                {self.key: ">"},
                count=count,
                block=None if block is None else max(1, int(block * 1000)),
            )
        except redis.RedisError as error:
            raise Unavailable(type(error).__name__) from None
        return _messages(answer)

    def ack(self, *ids: str) -> int:
        """Acknowledge entries: they will not be delivered again. Returns how many were pending."""
        if not ids:
            return 0
        try:
            return int(self._client.xack(self.key, self.group, *ids))
        except redis.RedisError as error:
            raise Unavailable(type(error).__name__) from None

    def claim_stale(self, *, min_idle: float, count: int = 100) -> list[InboxMessage]:
        """Take over entries another consumer of the group got ``min_idle`` seconds ago or
        more and never acknowledged (it crashed): at-least-once delivery."""
        count = max(1, min(count, MAX_READ_COUNT))
        try:
            answer = self._client.xautoclaim(
                self.key, self.group, self.consumer, int(min_idle * 1000), count=count
            )
        except redis.RedisError as error:
            raise Unavailable(type(error).__name__) from None
        claimed = answer[1] if isinstance(answer, list | tuple) and len(answer) > 1 else []
        return [parse_entry(entry_id, fields) for entry_id, fields in claimed if fields]

    def pending(self) -> int:
        """How many entries of the group were delivered and not yet acknowledged."""
        try:
            summary = self._client.xpending(self.key, self.group)
        except redis.RedisError as error:
            raise Unavailable(type(error).__name__) from None
        return int(summary.get("pending", 0)) if isinstance(summary, dict) else 0

    def length(self) -> int:
        """Entries kept in the stream, acknowledged or not (at most about the cap)."""
        try:
            return int(self._client.xlen(self.key))
        except redis.RedisError as error:
            raise Unavailable(type(error).__name__) from None


def _messages(answer: Any) -> list[InboxMessage]:
    messages: list[InboxMessage] = []
    streams = answer.items() if isinstance(answer, dict) else answer or []  # RESP3 / RESP2
    for _stream, entries in streams:
        for entry_id, fields in entries:
            if fields:  # an entry trimmed away while pending reads back empty
                messages.append(parse_entry(entry_id, fields))
    return messages
