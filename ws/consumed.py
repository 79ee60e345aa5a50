"""The jtis this gateway node consumed, remembered until their tokens expire.

Defence in depth behind the ``GETDEL`` of :mod:`wsauth.shared.state.replay`:
Redis is the one place that decides whether a token is still unused, but a
Redis failover can bring back a record that was already deleted (asynchronous
replication: the ``GETDEL`` reached the old master, not yet its replica). A
node that remembers what it consumed refuses such a resurrected token itself,
before asking Redis, with 401 ``token_replayed``. Another node, which never
saw the token, still asks Redis only: that is what remains (threat-model.md).

Bounded: an entry lives until its token's ``exp`` plus the leeway (after
that :func:`wsauth.shared.core.tokens.verify` refuses the token anyway) and
at most :data:`MAX_ENTRIES` are kept; past the cap the entry that expires
first is forgotten (the protection shrinks, nothing is refused wrongly).
``bench/admission.py`` measures the bytes per entry.
"""

from __future__ import annotations

import heapq

__all__ = ["MAX_ENTRIES", "ConsumedJtis"]

# About 49 MB at the measured 197 bytes an entry (bench/results/admission.md); at
# 800 accepted handshakes a second and the longest lifetime (305 s with the
# default leeway) a node needs 244,000.
MAX_ENTRIES = 250_000


class ConsumedJtis:
    """A set of jtis, each until its own expiry time; ``now`` is passed in."""

    def __init__(self, *, max_entries: int = MAX_ENTRIES) -> None:
        self._until: dict[str, float] = {}
        self._expiries: list[tuple[float, str]] = []  # a heap, earliest first
        self._max_entries = max_entries

    def __len__(self) -> int:
        return len(self._until)

    def __contains__(self, jti: object) -> bool:
        return jti in self._until

    def seen(self, jti: str, *, now: float) -> bool:
        """True when ``jti`` was consumed here and has not expired yet."""
        until = self._until.get(jti)
        return until is not None and now < until

    def add(self, jti: str, *, until: float, now: float) -> None:
        """Remember ``jti`` until ``until`` (its token's exp + leeway)."""
        self._prune(now)
        if until <= now or jti in self._until:
            return
        while len(self._until) >= self._max_entries:
            _, oldest = heapq.heappop(self._expiries)
            self._until.pop(oldest, None)
        self._until[jti] = until
        heapq.heappush(self._expiries, (until, jti))

    def _prune(self, now: float) -> None:
        expiries = self._expiries
        while expiries and expiries[0][0] <= now:
            _, jti = heapq.heappop(expiries)
            self._until.pop(jti, None)
