"""Channel history: a bounded Redis Stream per channel, with offsets and an epoch.

For channels matching ``WSAUTH_HISTORY_CHANNELS`` (the scope pattern syntax:
an exact name or a prefix ending in ``*``), each published message is
appended to the channel's stream **and** published live in one Lua script,
so two publishers can never make the stream order and the live order differ.
Each message gets the next ``offset`` (1, 2, ...) of its stream; the stream's
``epoch`` (random, drawn when the stream is created) changes whenever the
history is lost — Redis flushed or restarted empty, the stream expired —
so a client holding ``(offset, epoch)`` can always tell whether the history
still continues what it saw.

Redis keys (both with the same TTL and the same hash tag, so one slot on
Redis Cluster — the slot of the channel's topic — and one script touches both)::

    {prefix}history:{<topic>}:s   STREAM, entry id <offset>-0, field d = the data (JSON)
                                  XADD MAXLEN = WSAUTH_HISTORY_SIZE, EXPIRE WSAUTH_HISTORY_TTL
    {prefix}history:{<topic>}:m   HASH  epoch, top (the last offset)   same EXPIRE

where ``<topic>`` is the channel's pub/sub topic ``{prefix}channel:<name>``
(:func:`wsauth.shared.state.events.channel_topic`): the script publishes there,
with ``SPUBLISH`` on a Cluster with sharded pub/sub.

Recovery (``subscribe`` with ``since``) is in three steps, so nothing is lost
or doubled at the seam between history and live messages: subscribe to the
live messages first and buffer them, then read the stream after ``since``
(:func:`read_since`: one ``MULTI`` on the channel's slot), then merge
(:class:`Seam`, pure): stream entries first, then buffered and live messages
whose offset is above the last delivered one. :func:`recovery` decides
whether the gap could be filled (``recovered``) and why not
(``epoch_changed``, ``history_trimmed``, ``unknown_position``).

Pushes to users get the same treatment with ``WSAUTH_HISTORY_USERS``: the
stream of user ``sub`` is tagged with the user's topic ``{prefix}user:<sub>``
(:func:`user_stream_key`). A ``sub`` with ``{`` or ``}`` keeps no push history
(:func:`keeps_user_history`): its topic's Cluster slot is not one a hash tag
of ours can name, and one rule everywhere beats a rule per deployment. A client
recovers pushes in the handshake (the ``wsauth.since.<offset>.<epoch>``
subprotocol), before the welcome: the user's topic is live from the
registration on, so the same :class:`Seam` holds its pushes until the read.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio

from wsauth.shared.core.config import Settings
from wsauth.shared.core.errors import Unavailable
from wsauth.shared.core.keyset import b64url
from wsauth.shared.state.events import Message, Push, channel_topic, encode, user_topic

EPOCH_BYTES = 9  # 72 random bits: 12 base64url characters
EPOCH_CHANGED = "epoch_changed"
HISTORY_TRIMMED = "history_trimmed"
UNKNOWN_POSITION = "unknown_position"
REASONS = (EPOCH_CHANGED, HISTORY_TRIMMED, UNKNOWN_POSITION)

_EPOCH = re.compile(r"[A-Za-z0-9_-]{1,32}")
_OFFSET = re.compile(r"0|[1-9][0-9]{0,15}")

# KEYS: stream, meta, the channel's pub/sub topic (all of one slot: see stream_key).
# ARGV: data (JSON), maxlen, ttl, epoch if new, the published event up to (not
# including) its closing brace, "1" for SPUBLISH (sharded pub/sub) else PUBLISH. Offsets travel as
# decimal strings (protocol v1: {"offset": "17", "epoch": "..."}).
# A meta hash missing means the history is gone (or never was): a new epoch, and
# any stale stream entry is dropped so offsets start again at 1.
APPEND_AND_PUBLISH = """
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then
  epoch = ARGV[4]
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'epoch', epoch, 'top', 0)
end
local offset = redis.call('HINCRBY', KEYS[2], 'top', 1)
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[2], offset .. '-0', 'd', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
local command = 'PUBLISH'
if ARGV[6] == '1' then command = 'SPUBLISH' end
local receivers = redis.call(command, KEYS[3],
  ARGV[5] .. ',"offset":"' .. offset .. '","epoch":"' .. epoch .. '"}')
return {offset, epoch, receivers}
"""


APPEND_SHA = hashlib.sha1(APPEND_AND_PUBLISH.encode()).hexdigest()  # noqa: S324 - Redis's id


def new_epoch() -> str:
    return b64url(secrets.token_bytes(EPOCH_BYTES))


def stream_key(prefix: str, channel: str) -> str:
    """The stream's key. Its hash tag is the channel's pub/sub topic (no braces in a
    prefix or a channel name), so stream, meta and topic share one Cluster slot and
    one script may ``SPUBLISH`` to the topic."""
    return f"{prefix}history:{{{channel_topic(prefix, channel)}}}:s"


def meta_key(prefix: str, channel: str) -> str:
    return f"{prefix}history:{{{channel_topic(prefix, channel)}}}:m"


def user_stream_key(prefix: str, sub: str) -> str:
    """The stream of the pushes to ``sub``, tagged with the user's topic like
    :func:`stream_key` (only for a ``sub`` :func:`keeps_user_history` accepts)."""
    return f"{prefix}history:{{{user_topic(prefix, sub)}}}:s"


def user_meta_key(prefix: str, sub: str) -> str:
    return f"{prefix}history:{{{user_topic(prefix, sub)}}}:m"


def keeps_user_history(sub: str) -> bool:
    """False for a ``sub`` with a brace: the hash tag of its keys would not be its
    topic's slot on a Cluster (module docstring)."""
    return "{" not in sub and "}" not in sub


def has_history(channel: str, patterns: Iterable[str]) -> bool:
    """Does ``channel`` match one of the ``WSAUTH_HISTORY_CHANNELS`` patterns?"""
    for pattern in patterns:
        if pattern.endswith("*"):
            if channel.startswith(pattern[:-1]):
                return True
        elif channel == pattern:
            return True
    return False


@dataclass(frozen=True, slots=True)
class Position:
    """Where a client is in a channel's history: the last offset it saw, of which epoch."""

    offset: int
    epoch: str

    @classmethod
    def parse(cls, offset: Any, epoch: Any) -> Position:
        """The ``since`` of a ``subscribe``: ``offset`` a decimal string (``"0"`` to
        2^53 - 1), ``epoch`` as the gateway sent it.

        Raises:
            ValueError: anything else (the gateway answers ``bad_position``).
        """
        if not isinstance(offset, str) or not _OFFSET.fullmatch(offset):
            raise ValueError("since.offset must be a decimal string")
        if int(offset) >= 2**53:
            raise ValueError("since.offset is too large")
        if not isinstance(epoch, str) or not _EPOCH.fullmatch(epoch):
            raise ValueError("since.epoch must be an epoch string")
        return cls(int(offset), epoch)

    def to_json(self) -> dict[str, str]:
        return {"offset": str(self.offset), "epoch": self.epoch}


@dataclass(frozen=True, slots=True)
class Entry:
    """One message of a channel: its offset and epoch, and its data as JSON text."""

    offset: int
    epoch: str
    data: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Appended:
    offset: int
    epoch: str
    receivers: int


@dataclass(frozen=True, slots=True)
class Stream:
    """What :func:`read_since` found: the stream's epoch and last offset, and entries."""

    epoch: str | None
    top: int
    entries: tuple[Entry, ...]


@dataclass(frozen=True, slots=True)
class Recovery:
    """The answer to a ``subscribe`` with ``since``: what to deliver, and whether it is all."""

    recovered: bool
    entries: tuple[Entry, ...]
    epoch: str | None
    top: int
    reason: str | None = None


def recovery(since: Position, stream: Stream) -> Recovery:
    """Decide whether ``stream`` fills the gap after ``since`` (pure).

    ``recovered`` is True when every message after ``since.offset`` is in
    ``stream.entries``. Otherwise ``reason`` says why: ``epoch_changed`` (the
    history is gone or was recreated: nothing of it is delivered),
    ``history_trimmed`` (older messages fell off the cap: what is left is
    delivered), ``unknown_position`` (an offset this epoch never reached).
    """
    if stream.epoch is None or stream.epoch != since.epoch:
        return Recovery(False, (), stream.epoch, stream.top, EPOCH_CHANGED)
    if since.offset > stream.top:
        return Recovery(False, (), stream.epoch, stream.top, UNKNOWN_POSITION)
    entries = tuple(entry for entry in stream.entries if entry.offset > since.offset)
    if since.offset == stream.top:
        return Recovery(True, (), stream.epoch, stream.top)
    expected = range(since.offset + 1, stream.top + 1)
    if tuple(entry.offset for entry in entries) != tuple(expected):
        return Recovery(False, entries, stream.epoch, stream.top, HISTORY_TRIMMED)
    return Recovery(True, entries, stream.epoch, stream.top)


class Seam:
    """Merge live messages with a stream read, by offset: no gap, no duplicate (pure).

    Feed every live message of the channel to :meth:`live` from the moment the
    node is subscribed, before the stream is read; call :meth:`start` with the
    read. Each call returns what to deliver now, in order.
    """

    def __init__(self) -> None:
        self._buffer: list[Entry] | None = []
        self._epoch: str | None = None
        self._last = 0

    @property
    def last(self) -> tuple[int, str | None]:
        """The offset and epoch of the last message delivered."""
        return self._last, self._epoch

    def start(self, entries: Sequence[Entry], *, epoch: str | None, after: int) -> list[Entry]:
        """The stream read is in: ``entries`` (above offset ``after``), then the buffer."""
        buffered, self._buffer = self._buffer or [], None
        self._epoch, self._last = epoch, after
        delivered: list[Entry] = []
        for entry in [*sorted(entries, key=lambda e: e.offset), *buffered]:
            delivered.extend(self._pass(entry))
        return delivered

    def live(self, entry: Entry) -> list[Entry]:
        """A live message: held until :meth:`start`, then passed unless already delivered."""
        if self._buffer is not None:
            self._buffer.append(entry)
            return []
        return self._pass(entry)

    def _pass(self, entry: Entry) -> list[Entry]:
        if entry.epoch != self._epoch:
            # The stream was recreated (history lost): a new sequence starts.
            self._epoch, self._last = entry.epoch, entry.offset
            return [entry]
        if entry.offset <= self._last:
            return []  # delivered already (from the stream, or twice on the wire)
        self._last = entry.offset
        return [entry]


@dataclass(frozen=True, slots=True)
class Catchup:
    """What a recovery delivers (pure): ``entries`` above offset ``after``, then the
    held live messages; ``fields`` are the reply's ``recovered``/``reason``."""

    entries: tuple[Entry, ...]
    after: int
    fields: dict[str, Any]


def catch_up(since: Position | None, stream: Stream) -> Catchup:
    """The plan of a ``subscribe`` (or a handshake) with or without ``since`` (pure).

    Without ``since`` nothing old is delivered and the seam passes what is newer
    than the read. With it, :func:`recovery` decides; on ``epoch_changed`` or
    ``unknown_position`` nothing of the stream is delivered and the seam starts
    afresh.
    """
    if since is None:
        return Catchup((), 0, {})
    result = recovery(since, stream)
    fields: dict[str, Any] = {"recovered": result.recovered}
    if result.reason is not None:
        fields["reason"] = result.reason
    after = since.offset if result.reason in (None, HISTORY_TRIMMED) else 0
    return Catchup(result.entries, after, fields)


def position_fields(seam: Seam, stream: Stream) -> dict[str, str]:
    """``offset``/``epoch`` once the seam started: the position to keep (none before
    the stream exists)."""
    last, epoch = seam.last
    if epoch is None:
        return {}
    return {"offset": str(max(last, stream.top) if epoch == stream.epoch else last), "epoch": epoch}


def push_frame(entry: Entry) -> str:
    """The ``push`` frame of a stored entry of a user's stream."""
    return (
        f'{{"type":"push","data":{entry.data},"offset":"{entry.offset}","epoch":"{entry.epoch}"}}'
    )


def message_frame(channel: str, entry: Entry) -> str:
    """The ``message`` frame of a stored entry (its data is JSON text already)."""
    return (
        f'{{"type":"message","channel":{json.dumps(channel)},"data":{entry.data},'
        f'"offset":"{entry.offset}","epoch":"{entry.epoch}"}}'
    )


class History:
    """Append + publish, and read, for the channels of ``WSAUTH_HISTORY_CHANNELS`` and
    (with ``WSAUTH_HISTORY_USERS``) the pushes to users."""

    def __init__(
        self,
        *,
        prefix: str,
        size: int,
        ttl: int,
        channels: Sequence[str],
        users: bool = False,
    ) -> None:
        self.prefix = prefix
        self.size = size
        self.ttl = ttl
        self.channels = tuple(channels)
        self.users = users

    @classmethod
    def from_settings(cls, settings: Settings) -> History | None:
        """None when nothing keeps history (the default)."""
        if not settings.history_channels and not settings.history_users:
            return None
        return cls(
            prefix=settings.redis_prefix,
            size=settings.history_size,
            ttl=settings.history_ttl,
            channels=settings.history_channels,
            users=settings.history_users,
        )

    def covers(self, channel: str) -> bool:
        return has_history(channel, self.channels)

    def covers_user(self, sub: str) -> bool:
        """Are the pushes to ``sub`` kept (``WSAUTH_HISTORY_USERS``, :func:`keeps_user_history`)?"""
        return self.users and keeps_user_history(sub)

    def keeps(self, event: Push | Message) -> bool:
        """Is ``event`` (a push or a channel message) one this history keeps?"""
        if isinstance(event, Push):
            return self.covers_user(event.sub)
        return self.covers(event.channel)

    def append_event(
        self, client: redis.Redis, event: Push | Message, *, sharded: bool
    ) -> Appended:
        """Append ``event`` to its user's or channel's stream and publish it, atomically.

        Raises:
            BadEvent, EventTooLarge: see :func:`wsauth.shared.state.events.encode`.
            Unavailable: Redis did not answer in time.
        """
        return _run(client, self._event_keys(event), self._event_args(event, sharded))

    async def aappend_event(
        self, client: redis.asyncio.Redis, event: Push | Message, *, sharded: bool
    ) -> Appended:
        """:meth:`append_event` for asyncio code; same answer and errors."""
        return await _arun(client, self._event_keys(event), self._event_args(event, sharded))

    def _event_keys(self, event: Push | Message) -> list[str]:
        if isinstance(event, Push):
            return self._user_keys(event.sub)
        return self._channel_keys(event.channel)

    def _event_args(self, event: Push | Message, sharded: bool) -> list[Any]:
        body = encode(event).decode("utf-8")  # refuses what cannot be published
        data = json.dumps(event.data, separators=(",", ":"), ensure_ascii=False)
        return self._args(data, body, sharded)

    def _channel_keys(self, channel: str) -> list[str]:
        prefix = self.prefix
        return [
            stream_key(prefix, channel),
            meta_key(prefix, channel),
            channel_topic(prefix, channel),
        ]

    def _user_keys(self, sub: str) -> list[str]:
        prefix = self.prefix
        return [user_stream_key(prefix, sub), user_meta_key(prefix, sub), user_topic(prefix, sub)]

    def _args(self, data: str, body: str, sharded: bool) -> list[Any]:
        if not body.endswith("}"):
            raise ValueError("the event must be a JSON object")
        return [data, self.size, self.ttl, new_epoch(), body[:-1], "1" if sharded else "0"]

    async def read_since(self, client: redis.asyncio.Redis, channel: str, offset: int) -> Stream:
        """The stream's epoch, last offset and entries above ``offset`` (one ``MULTI``).

        Raises:
            Unavailable: Redis did not answer in time.
        """
        stream, meta, _ = self._channel_keys(channel)
        return await self._read(client, stream, meta, offset)

    async def read_pushes_since(self, client: redis.asyncio.Redis, sub: str, offset: int) -> Stream:
        """:meth:`read_since` for the pushes to ``sub``.

        Raises:
            Unavailable: Redis did not answer in time.
        """
        stream, meta, _ = self._user_keys(sub)
        return await self._read(client, stream, meta, offset)

    async def _read(
        self, client: redis.asyncio.Redis, stream: str, meta: str, offset: int
    ) -> Stream:
        try:
            async with client.pipeline(transaction=True) as pipe:
                pipe.hmget(meta, "epoch", "top")
                pipe.xrange(stream, min=f"{offset + 1}-0", count=self.size)
                (epoch, top), rows = await pipe.execute()
        except (redis.RedisError, OSError) as error:
            raise Unavailable(type(error).__name__) from None
        if epoch is None:
            return Stream(None, 0, ())
        epoch_text = _text(epoch)
        entries = tuple(
            Entry(int(_text(entry_id).split("-", 1)[0]), epoch_text, _text(fields[_key(fields)]))
            for entry_id, fields in rows
        )
        return Stream(epoch_text, int(top or 0), entries)


def _run(client: redis.Redis, keys: list[str], args: list[Any]) -> Appended:
    try:
        try:
            reply = client.evalsha(APPEND_SHA, 3, *keys, *args)
        except redis.exceptions.NoScriptError:  # first use on this server
            reply = client.eval(APPEND_AND_PUBLISH, 3, *keys, *args)
    except redis.RedisError as error:
        raise Unavailable(type(error).__name__) from None
    return _appended(reply)


async def _arun(client: redis.asyncio.Redis, keys: list[str], args: list[Any]) -> Appended:
    try:
        try:
            reply = await client.evalsha(APPEND_SHA, 3, *keys, *args)
        except redis.exceptions.NoScriptError:  # first use on this server
            reply = await client.eval(APPEND_AND_PUBLISH, 3, *keys, *args)
    except (redis.RedisError, OSError) as error:
        raise Unavailable(type(error).__name__) from None
    return _appended(reply)


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _key(fields: dict[Any, Any]) -> Any:
    return b"d" if b"d" in fields else "d"


def _appended(reply: Any) -> Appended:
    offset, epoch, receivers = reply
    return Appended(int(offset), _text(epoch), int(receivers))


__all__ = [
    "EPOCH_CHANGED",
    "HISTORY_TRIMMED",
    "UNKNOWN_POSITION",
    "Appended",
    "Catchup",
    "Entry",
    "History",
    "Position",
    "Recovery",
    "Seam",
    "Stream",
    "catch_up",
    "has_history",
    "keeps_user_history",
    "message_frame",
    "meta_key",
    "position_fields",
    "push_frame",
    "recovery",
    "stream_key",
    "user_meta_key",
    "user_stream_key",
]
