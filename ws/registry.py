"""The live connections of one gateway node, by user (``sub``) and by issuer session (``sid``).

A plain data structure, no I/O: the handler adds a connection when it opens
and removes it when it closes; push and revoke look connections up here.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

C = TypeVar("C", bound=Hashable)


class ConnectionRegistry(Generic[C]):
    """sub → connections and sid → connections; every connection is in at most one of each."""

    def __init__(self) -> None:
        self._by_sub: dict[str, set[C]] = {}
        self._by_sid: dict[str, set[C]] = {}
        self._owner: dict[C, tuple[str, str | None]] = {}

    def add(self, connection: C, *, sub: str, sid: str | None = None) -> None:
        """Register ``connection`` for ``sub`` (and ``sid``); re-adding moves it."""
        self.remove(connection)
        self._owner[connection] = (sub, sid)
        self._by_sub.setdefault(sub, set()).add(connection)
        if sid is not None:
            self._by_sid.setdefault(sid, set()).add(connection)

    def remove(self, connection: C) -> bool:
        """Forget ``connection``; False if it was not registered."""
        owner = self._owner.pop(connection, None)
        if owner is None:
            return False
        sub, sid = owner
        _discard(self._by_sub, sub, connection)
        if sid is not None:
            _discard(self._by_sid, sid, connection)
        return True

    def connections_of(self, sub: str) -> frozenset[C]:
        """The live connections of user ``sub`` (a snapshot)."""
        return frozenset(self._by_sub.get(sub, ()))

    def connections_of_session(self, sid: str) -> frozenset[C]:
        """The live connections opened with tokens of issuer session ``sid``."""
        return frozenset(self._by_sid.get(sid, ()))

    def owner_of(self, connection: C) -> tuple[str, str | None] | None:
        """``(sub, sid)`` of a registered connection, else None."""
        return self._owner.get(connection)

    def subjects(self) -> frozenset[str]:
        return frozenset(self._by_sub)

    def __contains__(self, connection: object) -> bool:
        return connection in self._owner

    def __iter__(self) -> Iterator[C]:
        """Every live connection (over a snapshot, so callers may remove while iterating)."""
        return iter(list(self._owner))

    def __len__(self) -> int:
        return len(self._owner)


def _discard(index: dict[str, set[C]], name: str, connection: C) -> None:
    members = index.get(name)
    if members is None:
        return
    members.discard(connection)
    if not members:
        del index[name]
