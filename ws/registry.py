"""The live connections of one gateway node: by user (``sub``), by issuer session (``sid``)
and by the channels they joined.

A plain data structure, no I/O: the handler adds a connection when it opens
and removes it when it closes (which also leaves every channel it joined);
push, channel messages and revoke look connections up here.

A :class:`Holdings` listener hears when this node starts and stops holding a
user or a channel — the first connection of a ``sub`` or the first member of
a channel, the last one leaving — which is when the gateway subscribes to,
and unsubscribes from, its Redis topic (:mod:`wsauth.ws.fanout`).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Generic, Literal, Protocol, TypeVar

C = TypeVar("C", bound=Hashable)

Kind = Literal["user", "channel"]


class Holdings(Protocol):
    """Told when the node starts (``held``) and stops (``released``) holding a user or channel."""

    def held(self, kind: Kind, name: str) -> None: ...

    def released(self, kind: Kind, name: str) -> None: ...


class ConnectionRegistry(Generic[C]):
    """sub → connections, sid → connections, channel → connections.

    Every connection is in at most one sub and one sid, and in any number of channels.
    """

    def __init__(self, listener: Holdings | None = None) -> None:
        self._by_sub: dict[str, set[C]] = {}
        self._by_sid: dict[str, set[C]] = {}
        self._by_channel: dict[str, set[C]] = {}
        self._owner: dict[C, tuple[str, str | None]] = {}
        self._joined: dict[C, set[str]] = {}
        self.listener = listener

    def add(self, connection: C, *, sub: str, sid: str | None = None) -> None:
        """Register ``connection`` for ``sub`` (and ``sid``); re-adding moves it (and leaves
        its channels)."""
        self.remove(connection)
        self._owner[connection] = (sub, sid)
        members = self._by_sub.setdefault(sub, set())
        members.add(connection)
        if len(members) == 1 and self.listener is not None:
            self.listener.held("user", sub)
        if sid is not None:
            self._by_sid.setdefault(sid, set()).add(connection)

    def remove(self, connection: C) -> bool:
        """Forget ``connection`` and leave its channels; False if it was not registered."""
        owner = self._owner.pop(connection, None)
        if owner is None:
            return False
        for channel in self._joined.pop(connection, ()):
            self._drop(self._by_channel, "channel", channel, connection)
        sub, sid = owner
        self._drop(self._by_sub, "user", sub, connection)
        if sid is not None:
            members = self._by_sid.get(sid)
            if members is not None:
                members.discard(connection)
                if not members:
                    del self._by_sid[sid]
        return True

    def join(self, connection: C, channel: str) -> bool:
        """Add a registered ``connection`` to ``channel``; True if it was not a member.

        An unregistered (e.g. closed) connection joins nothing: False.
        """
        if connection not in self._owner:
            return False
        joined = self._joined.setdefault(connection, set())
        if channel in joined:
            return False
        joined.add(channel)
        members = self._by_channel.setdefault(channel, set())
        members.add(connection)
        if len(members) == 1 and self.listener is not None:
            self.listener.held("channel", channel)
        return True

    def leave(self, connection: C, channel: str) -> bool:
        """Take ``connection`` out of ``channel``; True if it was a member."""
        joined = self._joined.get(connection)
        if joined is None or channel not in joined:
            return False
        joined.discard(channel)
        if not joined:
            del self._joined[connection]
        self._drop(self._by_channel, "channel", channel, connection)
        return True

    def connections_of(self, sub: str) -> frozenset[C]:
        """The live connections of user ``sub`` (a snapshot)."""
        return frozenset(self._by_sub.get(sub, ()))

    def connections_of_session(self, sid: str) -> frozenset[C]:
        """The live connections opened with tokens of issuer session ``sid``."""
        return frozenset(self._by_sid.get(sid, ()))

    def members(self, channel: str) -> frozenset[C]:
        """The live connections that joined ``channel`` (a snapshot)."""
        return frozenset(self._by_channel.get(channel, ()))

    def channels_of(self, connection: C) -> frozenset[str]:
        """The channels ``connection`` joined."""
        return frozenset(self._joined.get(connection, ()))

    def owner_of(self, connection: C) -> tuple[str, str | None] | None:
        """``(sub, sid)`` of a registered connection, else None."""
        return self._owner.get(connection)

    def subjects(self) -> frozenset[str]:
        return frozenset(self._by_sub)

    def channels(self) -> frozenset[str]:
        """Every channel at least one connection here joined."""
        return frozenset(self._by_channel)

    def __contains__(self, connection: object) -> bool:
        return connection in self._owner

    def __iter__(self) -> Iterator[C]:
        """Every live connection (over a snapshot, so callers may remove while iterating)."""
        return iter(list(self._owner))

    def __len__(self) -> int:
        return len(self._owner)

    def _drop(self, index: dict[str, set[C]], kind: Kind, name: str, connection: C) -> None:
        members = index.get(name)
        if members is None:
            return
        members.discard(connection)
        if not members:
            del index[name]
            if self.listener is not None:
                self.listener.released(kind, name)
